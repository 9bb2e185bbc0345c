"""The console's pages: server-rendered HTML over the operations API, htmx for the live parts.

``/`` overview (counts, throughput and lag charts, expiring jobs, pauses; refreshed every 5 s),
``/jobs`` and ``/jobs/{id}`` (finejobs.web.pages_jobs), ``/shards``, ``/workers``, ``/audit``
(finejobs.web.pages_ops), ``/schedules`` (finejobs.web.pages_schedules), ``/groups``
(finejobs.web.pages_groups), ``/pipelines`` (finejobs.web.pages_pipelines). GET pages take ``Viewer``;
every action is a POST form taking ``Operator`` (the operator role and the CSRF token), and answers with a
redirect to a page showing what it did (Post/Redirect/Get). Viewers are shown no action at all.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from finejobs.admin import EXPIRING_WITHIN
from finejobs.errors import FinejobsError
from finejobs.web import charts
from finejobs.web.deps import Viewer, admin_for, scrub
from finejobs.web.pages_common import STATES, both, error_page, root_of, status_of
from finejobs.web.pages_groups import router as groups_router
from finejobs.web.pages_jobs import router as jobs_router
from finejobs.web.pages_ops import router as ops_router
from finejobs.web.pages_pipelines import router as pipelines_router
from finejobs.web.render import render, templates
from finejobs.web.security import Principal

router = APIRouter()

ACTIVITY_MINUTES = 60
REFRESH = "every 5s"


def overview_context(request: Request, who: Principal) -> dict[str, Any]:
    """What the overview shows: the Admin's cached counts and activity (each reused for a few seconds)."""
    admin = admin_for(request, who)
    stats, activity = both(admin.stats, lambda: admin.activity(minutes=ACTIVITY_MINUTES))
    shards = sorted(set(stats.by_shard) | set(stats.lag_seconds) | set(stats.expiring_soon))
    return {
        "stats": stats, "activity": activity, "states": STATES, "shards": shards, "refresh": REFRESH,
        "kinds": sorted(stats.by_kind), "expiring": sum(stats.expiring_soon.values()),
        "expiring_until": stats.at + EXPIRING_WITHIN,
        "worst_lag": max(stats.lag_seconds.values(), default=None),
        "throughput": charts.throughput_chart(activity.since, activity.succeeded, activity.failed),
        "lag": charts.lag_chart(activity.since, activity.lag_seconds),
        "finished": (sum(activity.succeeded), sum(activity.failed)),
    }


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, who: Viewer) -> Response:
    return render(request, who, "overview.html", page="overview", **overview_context(request, who))


@router.get("/partials/overview", response_class=HTMLResponse)
def overview_live(request: Request, who: Viewer) -> Response:
    """The overview's cards, charts and tables alone (htmx swaps them in every few seconds)."""
    return render(request, who, "_overview_live.html", page="overview", live=True,
                  **overview_context(request, who))


router.include_router(jobs_router)
router.include_router(ops_router)
router.include_router(groups_router)
router.include_router(pipelines_router)


def _include_schedules() -> None:
    """The schedule pages (finejobs.web.pages_schedules), once that module exists."""
    try:
        module = importlib.import_module("finejobs.web.pages_schedules")
    except ModuleNotFoundError as exc:
        if exc.name != "finejobs.web.pages_schedules":
            raise
        return
    router.include_router(module.router)


_include_schedules()


# ---------------------------------------------------------------- errors (app.py calls these for pages)


def error_response(request: Request, exc: FinejobsError) -> Response:
    """A finejobs error a page route did not handle itself: an error page (404, 503 or 422)."""
    who = getattr(request.state, "principal", None)
    if isinstance(who, Principal):
        return error_page(request, who, exc)
    return _bare(request, status_of(exc), "Refused", scrub(request, exc))


def http_error_response(request: Request, exc: HTTPException) -> Response:
    """401 (asks for credentials), 403 (a viewer acting, a missing CSRF token, an open console asked from
    afar), 404 ...: a small page saying why, headers kept (WWW-Authenticate)."""
    who = getattr(request.state, "principal", None)
    heading = {401: "Credentials required", 403: "Forbidden", 404: "Not found"}.get(exc.status_code, "Refused")
    message = str(exc.detail)
    if isinstance(who, Principal) and exc.status_code != 401:
        response = render(request, who, "error.html", status_code=exc.status_code, status=exc.status_code,
                          heading=heading, message=message)
    else:
        response = _bare(request, exc.status_code, heading, message)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _bare(request: Request, status: int, heading: str, message: str) -> HTMLResponse:
    """An error page for someone not (yet) known: no navigation, no token."""
    return templates.TemplateResponse(request, "error_bare.html", {
        "status": status, "heading": heading, "message": message, "root": root_of(request)}, status_code=status)
