"""REST: pipeline runs (list by state and pipeline, keyset pages; one run with each step's progress; cancel):
thin views over the pipeline operations (``Admin.pipelines``, finejobs.admin.pipelines). Runs live in the
database of their pipeline's shard: with a shard map, ``database`` names it (default: the shard map's default).
An unknown run is 404; cancelling a run that has already ended, 409."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from finejobs.admin.pipelines import PIPELINE_PAGE_LIMIT
from finejobs.filters import MAX_FILTER_TEXT
from finejobs.pipeline_info import PipelineInfo
from finejobs.web import schemas_groups as schemas
from finejobs.web.api_common import ACT, ITEM, READ, Route
from finejobs.web.deps import Operator, Viewer, admin_for, scrub

router = APIRouter(tags=["pipelines"], route_class=Route)

RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the run's id")]
Database = Annotated[str | None, Query(max_length=MAX_FILTER_TEXT,
                                       description="with a shard map: the database holding the runs")]


def run_out(request: Request, run: PipelineInfo) -> schemas.Pipeline:
    data: dict[str, Any] = run.to_json()
    if data["error"] is not None:
        data["error"] = scrub(request, data["error"])
    return schemas.Pipeline.model_validate(data)


@router.get("/pipelines", responses=READ, summary="Pipeline runs, newest first, with each step's progress")
def list_pipelines(request: Request, who: Viewer, state: schemas.RunState | None = None,
                   name: Annotated[str | None, Query(max_length=200, description="the pipeline's name")] = None,
                   before: Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                                       description="next_before of the page before")] = None,
                   limit: Annotated[int, Query(ge=1, le=PIPELINE_PAGE_LIMIT)] = 50,
                   database: Database = None) -> schemas.PipelinePage:
    page = admin_for(request, who).pipelines.list(state=state, name=name, before=before, limit=limit,
                                                      database=database)
    return schemas.PipelinePage(pipelines=[run_out(request, r) for r in page.pipelines],
                                next_before=page.next_before)


@router.get("/pipelines/{run_id}", responses=ITEM, summary="A run: state, params, result or error, its steps")
def get_pipeline(request: Request, who: Viewer, run_id: RunId, database: Database = None) -> schemas.Pipeline:
    return run_out(request, admin_for(request, who).pipelines.get(run_id, database=database))


@router.post("/pipelines/{run_id}/cancel", responses=ACT,
             summary="Cancel a running run (its waiting chunk jobs are cancelled)")
def cancel(request: Request, who: Operator, run_id: RunId, body: schemas.PipelineCancel | None = None,
           database: Database = None) -> schemas.Pipeline:
    reason = body.reason if body is not None else "cancelled by operator"
    return run_out(request, admin_for(request, who).pipelines.cancel(run_id, reason, database=database))
