"""The console's pipeline pages: the runs (state, steps done, the step each is at with its progress bar;
by state and pipeline, keyset pages; refreshed every 5 s), a run (its params, result or error, and a
progress bar per step with its chunks and items done, failed, skipped), and cancel after a confirmation
step. Every read and action is one of the pipeline operations' (``Admin.pipelines``, audited as
``web:<user>``). With a shard map, ``?database=`` names the runs' database (links carry it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from finejobs.admin.pipelines import RUN_STATES
from finejobs.errors import FinejobsError, InvalidJobOptions, PipelineNotFound
from finejobs.pipeline_info import PipelineInfo, StepProgress
from finejobs.web.deps import Operator, Viewer, admin_for, console_of
from finejobs.web.pages_common import error_page, flash_redirect, signed_message
from finejobs.web.pages_groups import REFRESH
from finejobs.web.render import render
from finejobs.web.security import Principal

router = APIRouter()

LIST_LIMIT = 50
_MESSAGES = {"cancelled": "Pipeline run {0} cancelled: its waiting chunks are cancelled, no later step starts."}


def step_bar(step: StepProgress) -> tuple[int, int, list[tuple[str, int]]]:
    """(total, finished, segments) of a step's bar: its items once it has any, else its chunks."""
    if step.items_total:
        parts = [("done", step.items_done), ("failed", step.items_failed), ("skipped", step.items_skipped)]
        return step.items_total, sum(n for _, n in parts), parts
    parts = [("done", step.chunks_done), ("failed", step.chunks_failed), ("skipped", step.chunks_skipped)]
    return step.chunks_total, sum(n for _, n in parts), parts


def current_step(run: PipelineInfo) -> StepProgress | None:
    """The step a run is at: the first not done (the last once every step is done)."""
    return next((s for s in run.steps if s.state != "done"), run.steps[-1] if run.steps else None)


def _database(request: Request) -> str | None:
    raw = request.query_params.get("database") or None
    return None if raw is None else raw[:200]


def _common(request: Request) -> dict[str, Any]:
    root = request.scope.get("root_path", "")
    many = len(console_of(request).admin.queue.databases) > 1

    def href(run: PipelineInfo, action: str = "", *, live: bool = False) -> str:
        query = f"?{urlencode({'database': run.database})}" if many else ""
        return f"{root}{'/partials' if live else ''}/pipelines/{run.id}" + (f"/{action}" if action else "") + query

    return {"href": href, "many_databases": many, "refresh": REFRESH, "step_bar": step_bar,
            "current_step": current_step}


def _run_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) < 2**63:
        raise PipelineNotFound(f"no pipeline run with id {raw[:30]!r}")
    return int(raw)


# ------------------------------------------------------------------ the list


def _list_context(request: Request, who: Principal) -> dict[str, Any]:
    params = request.query_params
    state = params.get("state", "") if params.get("state", "") in RUN_STATES else ""
    name = params.get("name", "").strip()[:200]
    raw = params.get("before") or ""
    if raw and (not raw.isdigit() or len(raw) > 19):
        raise InvalidJobOptions(f"before: a pipeline run's id, got {raw[:20]!r}")
    before = int(raw) if raw else None
    page = admin_for(request, who).pipelines.list(state=state or None, name=name or None, before=before,
                                                      limit=LIST_LIMIT, database=_database(request))
    keep = {k: v for k, v in (("state", state), ("name", name), ("database", _database(request))) if v}
    older = None if page.next_before is None else urlencode({**keep, "before": page.next_before})
    return {"runs": page.pipelines, "state": state, "name": name, "states": RUN_STATES, "before": before,
            "query": urlencode({**keep, **({"before": before} if before else {})}), "older": older, **_common(request)}


@router.get("/pipelines", response_class=HTMLResponse)
def pipelines_page(request: Request, who: Viewer) -> Response:
    """The newest runs with their state and the progress of the step each is at."""
    try:
        context = _list_context(request, who)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="pipelines")
    return render(request, who, "pipelines.html", page="pipelines", **context)


@router.get("/partials/pipelines", response_class=HTMLResponse)
def pipelines_live(request: Request, who: Viewer) -> Response:
    try:
        context = _list_context(request, who)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="pipelines")
    return render(request, who, "_pipelines_live.html", page="pipelines", live=True, **context)


# ------------------------------------------------------------------ one run


def _get(request: Request, who: Principal, run_id: str) -> PipelineInfo:
    return admin_for(request, who).pipelines.get(_run_id(run_id), database=_database(request))


@router.get("/pipelines/{run_id}", response_class=HTMLResponse)
def pipeline_page(request: Request, who: Viewer, run_id: str) -> Response:
    """A run: state, params, result or error, a bar per step (chunks and items), its Cancel button."""
    try:
        run = _get(request, who, run_id)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="pipelines")
    return render(request, who, "pipeline.html", page="pipelines", run=run,
                  flash=signed_message(request, who, _MESSAGES), **_common(request))


@router.get("/partials/pipelines/{run_id}", response_class=HTMLResponse)
def pipeline_live(request: Request, who: Viewer, run_id: str) -> Response:
    try:
        run = _get(request, who, run_id)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="pipelines")
    return render(request, who, "_pipeline_live.html", page="pipelines", live=True, run=run, **_common(request))


@router.get("/pipelines/{run_id}/cancel", response_class=HTMLResponse)
def cancel_review(request: Request, who: Operator, run_id: str) -> Response:
    """The confirmation step: the run, the step it is at, what cancelling does."""
    try:
        run = _get(request, who, run_id)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="pipelines")
    return render(request, who, "pipeline_cancel.html", page="pipelines", run=run, **_common(request))


@router.post("/pipelines/{run_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, who: Operator, run_id: str) -> Response:
    """Cancel the run, then back to its page saying so."""
    try:
        run = admin_for(request, who).pipelines.cancel(
            _run_id(run_id), f"cancelled by {who.name} in the console", database=_database(request))
    except FinejobsError as exc:
        return error_page(request, who, exc, page="pipelines")
    many = len(console_of(request).admin.queue.databases) > 1
    return flash_redirect(request, who, f"/pipelines/{run.id}", "cancelled", run.id,
                          query=urlencode({"database": run.database}) if many else "")
