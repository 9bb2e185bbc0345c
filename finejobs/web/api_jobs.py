"""REST: jobs (list, count, get, enqueue, retry, cancel, delete, bulk by filter), counts and activity, kinds,
shards, pauses, workers and the audit log. Each route is a thin view over one finejobs.admin.Admin method."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime

from finejobs.admin import ACTIVITY_MINUTES, PAGE_LIMIT
from finejobs.filters import MAX_FILTER_TEXT, JobFilter
from finejobs.jobs import Job, JobState
from finejobs.limits import MAX_MESSAGE_CHARS, check_text
from finejobs.web import schemas
from finejobs.web.api_common import ACT, ACTION, ITEM, READ, Route, located, refuse
from finejobs.web.deps import Operator, Viewer, admin_for, scrub

router = APIRouter(route_class=Route)

JobId = Annotated[int, Path(ge=1, le=schemas.MAX_ID, description="the job's id")]
Database = Annotated[str | None, Query(max_length=MAX_FILTER_TEXT,
                                       description="with a shard map: the database holding the job")]
QueryText = Annotated[str | None, Query(max_length=MAX_FILTER_TEXT)]


def job_out(request: Request, job: Job) -> schemas.Job:
    """A job for a response (passwords masked in its errors)."""
    data = job.to_json()
    data["errors"] = [{**e, "message": scrub(request, e["message"]),
                       "traceback": None if e["traceback"] is None else scrub(request, e["traceback"])}
                      for e in data["errors"]]
    if data["defect"] is not None:
        data["defect"] = scrub(request, data["defect"])
    return schemas.Job.model_validate(data)


def job_filter(
    state: Annotated[JobState | None, Query(description="scheduled and available are told apart by run_at")] = None,
    kind: QueryText = None,
    shard: QueryText = None,
    schedule: Annotated[str | None, Query(max_length=MAX_FILTER_TEXT, description="the schedule's name")] = None,
    error: Annotated[str | None, Query(max_length=MAX_FILTER_TEXT,
                                       description="text in the last error's message (any case)")] = None,
    created_after: Annotated[AwareDatetime | None, Query()] = None,
    created_before: Annotated[AwareDatetime | None, Query()] = None,
    finished_after: Annotated[AwareDatetime | None, Query()] = None,
    finished_before: Annotated[AwareDatetime | None, Query()] = None,
    database: Database = None,
) -> JobFilter:
    return JobFilter(state=state, kind=kind, shard=shard, schedule=schedule, error=error,
                     created_after=created_after, created_before=created_before, finished_after=finished_after,
                     finished_before=finished_before, database=database)


Filtered = Annotated[JobFilter, Depends(job_filter)]

# ---------------------------------------------------------------- jobs


@router.get("/jobs", responses=READ, tags=["jobs"], summary="List jobs, newest first")
def list_jobs(request: Request, who: Viewer, filt: Filtered,
              cursor: Annotated[str | None, Query(max_length=100, description="next_cursor of the page before")] = None,
              limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 50) -> schemas.JobPage:
    page = admin_for(request, who).jobs(filt, cursor=cursor, limit=limit)
    return schemas.JobPage(jobs=[job_out(request, j) for j in page.jobs], next_cursor=page.next_cursor,
                           examined=page.examined)


@router.get("/jobs/count", responses=READ, tags=["jobs"], summary="Count matching jobs (bounded)")
def count_jobs(request: Request, who: Viewer, filt: Filtered) -> schemas.Count:
    return schemas.Count.model_validate(admin_for(request, who).count(filt).to_json())


@router.get("/jobs/{job_id}", responses=ITEM, tags=["jobs"], summary="One job")
def get_job(request: Request, who: Viewer, job_id: JobId, database: Database = None) -> schemas.Job:
    return job_out(request, admin_for(request, who).job(job_id, database=database))


@router.post("/jobs", status_code=201, responses=ACTION, tags=["jobs"], summary="Enqueue a job of a declared kind")
def enqueue(request: Request, who: Operator, body: schemas.Enqueue) -> schemas.Job:
    job = admin_for(request, who).enqueue(body.kind, body.payload, shard=body.shard, run_at=body.run_at,
                                          expires_at=body.expires_at, priority=body.priority,
                                          unique_key=body.unique_key)
    return job_out(request, job)


@router.post("/jobs/bulk", responses=ACTION, tags=["jobs"], summary="Retry, cancel or delete every matching job")
def bulk(request: Request, who: Operator, body: schemas.Bulk) -> schemas.BulkResult:
    given = body.filter.model_dump(exclude_none=True)
    if not set(given) - {"database"}:
        raise refuse("filter: name at least one field besides database (acting on every job is refused)",
                     "body", "filter")
    if body.reason is not None:
        if body.action != "cancel":
            raise refuse(f"reason: only cancel takes a reason, not {body.action}", "body", "reason")
        check_text("reason", body.reason, max_chars=MAX_MESSAGE_CHARS)
    with located("body", "filter", names=schemas.Filter.model_fields):
        filt = JobFilter(**given)
        admin = admin_for(request, who)
        if body.action == "retry":
            result = admin.retry_matching(filt, dry_run=body.dry_run)
        elif body.action == "cancel":
            result = admin.cancel_matching(filt, body.reason or "cancelled by operator", dry_run=body.dry_run)
        else:
            result = admin.delete_matching(filt, dry_run=body.dry_run)
    return schemas.BulkResult.model_validate(result.to_json())


@router.post("/jobs/{job_id}/retry", responses=ACT, tags=["jobs"],
             summary="Run a failed, expired or cancelled job again now")
def retry(request: Request, who: Operator, job_id: JobId, database: Database = None) -> schemas.Job:
    return job_out(request, admin_for(request, who).retry(job_id, database=database))


@router.post("/jobs/{job_id}/cancel", responses=ACT, tags=["jobs"], summary="Cancel a waiting or running job")
def cancel(request: Request, who: Operator, job_id: JobId, body: schemas.CancelRequest | None = None,
           database: Database = None) -> schemas.Job:
    reason = body.reason if body is not None else "cancelled by operator"
    return job_out(request, admin_for(request, who).cancel(job_id, reason, database=database))


@router.delete("/jobs/{job_id}", responses=ACT, tags=["jobs"],
               summary="Delete a job that is not running (answers it as it was)")
def delete(request: Request, who: Operator, job_id: JobId, database: Database = None) -> schemas.Job:
    return job_out(request, admin_for(request, who).delete(job_id, database=database))


# ---------------------------------------------------------------- counts and activity


@router.get("/stats", responses=READ, tags=["stats"], summary="Counts by state, kind and shard; lag; pauses")
def stats(request: Request, who: Viewer,
          fresh: Annotated[bool, Query(description="count again (else reused for a few seconds)")] = False,
          ) -> schemas.Overview:
    return schemas.Overview.model_validate(admin_for(request, who).stats(fresh=fresh).to_json())


@router.get("/activity", responses=READ, tags=["stats"], summary="Jobs finished and lag, per minute")
def activity(request: Request, who: Viewer,
             minutes: Annotated[int, Query(ge=1, le=ACTIVITY_MINUTES)] = 60) -> schemas.Activity:
    return schemas.Activity.model_validate(admin_for(request, who).activity(minutes=minutes).to_json())


# ---------------------------------------------------------------- kinds, shards, pauses, workers, audit


@router.get("/kinds", responses=READ, tags=["kinds and shards"], summary="The job kinds the queue declares")
def kinds(request: Request, who: Viewer) -> list[schemas.Kind]:
    admin = admin_for(request, who)
    paused = {p.kind for p in admin.paused() if p.shard is None}
    return [schemas.Kind.model_validate({**k.to_json(), "paused": k.name in paused}) for k in admin.kinds()]


@router.get("/shards", responses=READ, tags=["kinds and shards"], summary="Shards with their counts by state")
def shards(request: Request, who: Viewer) -> list[schemas.Shard]:
    admin = admin_for(request, who)
    paused = {p.shard for p in admin.paused() if p.kind is None}
    return [schemas.Shard.model_validate({**s.to_json(), "paused": s.name in paused}) for s in admin.shards()]


@router.get("/pauses", responses=READ, tags=["kinds and shards"], summary="Every pause")
def pauses(request: Request, who: Viewer) -> list[schemas.Pause]:
    return [schemas.Pause.model_validate(p.to_json()) for p in admin_for(request, who).paused()]


@router.post("/pauses", responses=ACTION, tags=["kinds and shards"],
             summary="Pause a kind, a shard, or a kind in a shard (workers stop claiming it)")
def pause(request: Request, who: Operator, body: schemas.PauseRequest) -> schemas.Pause:
    made = admin_for(request, who).pause(kind=body.kind, shard=body.shard, reason=body.reason)
    return schemas.Pause.model_validate(made.to_json())


@router.delete("/pauses", responses=ACTION, tags=["kinds and shards"], summary="Resume a paused kind or shard")
def resume(request: Request, who: Operator, kind: QueryText = None, shard: QueryText = None) -> schemas.Resumed:
    return schemas.Resumed(resumed=admin_for(request, who).resume(kind=kind, shard=shard))


@router.get("/workers", responses=READ, tags=["workers"], summary="The worker registry, alive ones first")
def workers(request: Request, who: Viewer) -> list[schemas.Worker]:
    return [schemas.Worker.model_validate(w.to_json()) for w in admin_for(request, who).workers()]


@router.get("/audit", responses=READ, tags=["audit"], summary="The audit log, newest first")
def audit(request: Request, who: Viewer,
          before: Annotated[int | None, Query(ge=1, le=schemas.MAX_ID, description="entries older than this id")]
          = None, limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 50) -> list[schemas.AuditEntry]:
    return [schemas.AuditEntry.model_validate(e.to_json())
            for e in admin_for(request, who).audit(before=before, limit=limit)]

