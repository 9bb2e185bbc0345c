"""The jobs pages: the filtered list (keyset pages), bulk actions on every job matching a filter (a dry-run
count and a confirmation first), and one job (payload, attempts, timeline, retry / cancel / delete)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from finejobs.admin import Admin, BulkResult
from finejobs.errors import FinejobsError, InvalidJobOptions, JobNotFound
from finejobs.filters import JobFilter
from finejobs.jobs import Job, JobState
from finejobs.web.deps import Operator, Viewer, admin_for, scrub
from finejobs.web.pages_common import (
    STATES,
    FilterForm,
    Posted,
    both,
    error_page,
    flash_redirect,
    is_htmx,
    read_flash,
    status_of,
)
from finejobs.web.pages_groups import group_url
from finejobs.web.render import render
from finejobs.web.security import Principal

router = APIRouter()

LIMITS = (25, 50, 100, 200)
DEFAULT_LIMIT = 50
ACTIONS = {  # action: (verb, the states it applies to)
    "retry": ("Retry", ("failed", "expired", "cancelled")),
    "cancel": ("Cancel", ("scheduled", "available", "running")),
    "delete": ("Delete", ("scheduled", "available", "succeeded", "failed", "expired", "cancelled")),
}
SNIPPET_CHARS = 140


# ---------------------------------------------------------------- the list


@router.get("/jobs", response_class=HTMLResponse)
def jobs(request: Request, who: Viewer) -> Response:
    """Jobs matching the filter form, newest first, one keyset page at a time; how many match."""
    form = FilterForm.read(request.query_params)
    admin = admin_for(request, who)
    context: dict[str, Any] = {"form": form, "states": STATES, "kinds": [k.name for k in admin.kinds()],
                               "databases": admin.queue.databases, "limits": LIMITS, "actions": ACTIONS,
                               "limit": request.query_params.get("limit", str(DEFAULT_LIMIT)),
                               "snippet": SNIPPET_CHARS, **read_flash(request, who)}
    try:
        limit = _limit(context["limit"])
        filt = form.to_filter()
        cursor = request.query_params.get("cursor") or None
        listing, count = both(lambda: admin.jobs(filt, cursor=cursor, limit=limit), lambda: admin.count(filt))
    except FinejobsError as exc:
        return render(request, who, "jobs.html", page="jobs", status_code=status_of(exc), error=scrub(request, exc),
                      listing=None, count=None, **context)
    return render(request, who, "jobs.html", page="jobs", listing=listing, count=count,
                  first=request.query_params.get("cursor") is None, **context)


def _limit(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 4:
        raise InvalidJobOptions(f"limit: a number of jobs per page, got {raw[:20]!r}")
    return int(raw)


# ---------------------------------------------------------------- bulk: every job matching the filter


@router.get("/jobs/bulk", response_class=HTMLResponse)
def bulk_review(request: Request, who: Operator) -> Response:
    """The confirmation step: how many jobs the action would touch (a dry run), and the Confirm button."""
    form = FilterForm.read(request.query_params)
    action = request.query_params.get("action", "")
    template = "_bulk_confirm.html" if is_htmx(request) else "bulk_confirm.html"
    try:
        filt = _bulk_filter(action, form)
        result = _bulk(admin_for(request, who), who, action, filt, dry_run=True)
    except FinejobsError as exc:
        return render(request, who, template, page="jobs", status_code=status_of(exc), form=form, action=action,
                      actions=ACTIONS, error=scrub(request, exc), result=None)
    return render(request, who, template, page="jobs", form=form, action=action, actions=ACTIONS, result=result,
                  error=None)


@router.post("/jobs/bulk", response_class=HTMLResponse)
def bulk(request: Request, who: Operator, fields: Posted) -> Response:
    """Do it: retry, cancel or delete every job matching the filter (in batches), then show what changed."""
    form = FilterForm.read(fields)
    action = fields.get("action", "")
    try:
        filt = _bulk_filter(action, form)
        result = _bulk(admin_for(request, who), who, action, filt, dry_run=False)
    except FinejobsError as exc:
        return render(request, who, "bulk_confirm.html", page="jobs", status_code=status_of(exc), form=form,
                      action=action, actions=ACTIONS, error=scrub(request, exc), result=None)
    return flash_redirect(request, who, "/jobs", "bulk", action, result.matched, result.changed, query=form.query())


def _bulk_filter(action: str, form: FilterForm) -> JobFilter:
    if action not in ACTIONS:
        raise InvalidJobOptions(f"action: one of {', '.join(ACTIONS)}, got {action[:40]!r}")
    filt = form.to_filter()
    if filt.but(database=None).is_empty:
        raise InvalidJobOptions("a bulk action needs a filter: choose a state, kind, shard, schedule, error text or "
                                "time range first (the action applies to every job matching it, not just a page)")
    return filt


def _bulk(admin: Admin, who: Principal, action: str, filt: JobFilter, *, dry_run: bool) -> BulkResult:
    if action == "retry":
        return admin.retry_matching(filt, dry_run=dry_run)
    if action == "cancel":
        return admin.cancel_matching(filt, f"cancelled by {who.name} in the console", dry_run=dry_run)
    return admin.delete_matching(filt, dry_run=dry_run)


# ---------------------------------------------------------------- one job


@dataclass(frozen=True)
class Event:
    """One line of a job's timeline (``rank`` orders events of the same moment: a start before its end)."""

    at: datetime
    what: str
    detail: str = ""
    tone: str = ""
    rank: int = 0


def timeline(job: Job) -> list[Event]:
    """What happened to the job, and what is due, in time order: created, each attempt's end, the last start,
    the finish, and (for a waiting job) when it is due and when it expires."""
    last = 3 * (job.attempt + 2)
    events = [Event(job.created_at, "created", f"kind {job.kind} in shard {job.shard}")]
    if job.schedule_id is not None and job.fire_at is not None:
        events.append(Event(job.fire_at, "tick", f"of schedule #{job.schedule_id}", rank=1))
    for error in job.errors:
        tone = "cancelled" if error.error == "Cancelled" else "failed"
        events.append(Event(error.at, f"attempt {error.attempt} ended", f"{error.error}: {error.message}", tone,
                            rank=3 * error.attempt + 4))
    if job.started_at is not None:
        events.append(Event(job.started_at, f"attempt {job.attempt} started", job.lease_owner or "", "running",
                            rank=3 * job.attempt + 3))
    if job.state in (JobState.SCHEDULED, JobState.AVAILABLE):
        events.append(Event(job.run_at, "due" if job.attempt == 0 else f"attempt {job.attempt + 1} due", "", "waiting",
                            rank=last))
    if job.state is JobState.RUNNING and job.lease_expires_at is not None:
        events.append(Event(job.lease_expires_at, "lease ends", "rescued then unless the heartbeat extends it",
                            rank=last))
    if job.finished_at is not None:
        events.append(Event(job.finished_at, f"finished: {job.state.value}", job.result or "", job.state.value,
                            rank=last + 1))
    if job.expires_at is not None and not job.state.is_final:
        events.append(Event(job.expires_at, "expires", "if it has not started by then", "expired", rank=last + 2))
    return sorted(events, key=lambda e: (e.at, e.rank))


def allowed(job: Job) -> list[str]:
    """The actions the job's state allows."""
    return [name for name, (_, states) in ACTIONS.items() if job.state.value in states]


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, who: Viewer, job_id: str) -> Response:
    """One job: its facts, payload, every attempt's error and traceback, its timeline and actions."""
    database = request.query_params.get("database") or None
    admin = admin_for(request, who)
    try:
        job = admin.job(_job_id(job_id), database=database)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="jobs")
    group = admin.groups.of_job(job)
    group_href = None if group is None else group_url(request, group)
    return render(request, who, "job.html", page="jobs", job=job, events=timeline(job), allowed=allowed(job),
                  actions=ACTIONS, database=database, group=group, group_href=group_href,
                  **read_flash(request, who))


@router.post("/jobs/{job_id}/{action}", response_class=HTMLResponse)
def job_action(request: Request, who: Operator, job_id: str, action: str, fields: Posted) -> Response:
    """Retry, cancel or delete one job, then back to its page (to the list after a delete)."""
    if action not in ACTIONS:
        raise HTTPException(404, f"no such action: {action[:40]}")
    database = fields.get("database") or None
    admin = admin_for(request, who)
    try:
        number = _job_id(job_id)
        if action == "retry":
            admin.retry(number, database=database)
        elif action == "cancel":
            admin.cancel(number, f"cancelled by {who.name} in the console", database=database)
        else:
            admin.delete(number, database=database)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="jobs")
    query = "" if database is None else urlencode({"database": database})
    if action == "delete":
        return flash_redirect(request, who, "/jobs", "deleted", number)
    return flash_redirect(request, who, f"/jobs/{number}", "retried" if action == "retry" else "cancelled", number,
                          query=query)


def _job_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) < 2**63:
        raise JobNotFound(f"no job with id {raw[:30]!r}")
    return int(raw)
