"""Server-rendered pages: the Jinja2 environment and ``render`` (every page gets who asks, their CSRF token,
the server's time and the navigation). Autoescaping is on: nothing a job holds is ever rendered raw."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from finejobs.web.deps import console_of, csrf_token
from finejobs.web.security import CSRF_FIELD, CSRF_HEADER, Principal

NAV = (("overview", "/", "Overview"), ("jobs", "/jobs", "Jobs"), ("schedules", "/schedules", "Schedules"),
       ("groups", "/groups", "Groups"), ("pipelines", "/pipelines", "Pipelines"),
       ("shards", "/shards", "Shards & kinds"), ("workers", "/workers", "Workers"), ("audit", "/audit", "Audit"))

templates = Jinja2Templates(directory=str(files("finejobs.web") / "templates"))


def _ts(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    seconds = (now - value).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    text = (f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.0f}m" if seconds < 5400
            else f"{seconds / 3600:.0f}h" if seconds < 129600 else f"{seconds / 86400:.0f}d")
    return f"in {text}" if future else f"{text} ago"


def _duration(value: timedelta | float | None) -> str:
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


templates.env.filters.update(ts=_ts, duration=_duration, pretty=_pretty)
templates.env.globals.update(ago=_ago, CSRF_FIELD=CSRF_FIELD, CSRF_HEADER=CSRF_HEADER, NAV=NAV)


def render(request: Request, who: Principal, template: str, *, page: str = "", status_code: int = 200,
           **context: Any) -> HTMLResponse:
    """Render ``template`` for ``who``; the base template gets ``who``, ``csrf``, ``now`` (the database
    clock of the queue), ``page`` (the nav entry to highlight) and ``root`` (the mount prefix)."""
    admin = console_of(request).admin
    return templates.TemplateResponse(request, template, {
        "who": who, "csrf": csrf_token(request, who), "now": admin.queue.clock(), "page": page,
        "root": request.scope.get("root_path", ""), **context}, status_code=status_code)
