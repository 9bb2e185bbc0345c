"""The console's group pages: the list (state, a progress bar, counts, rate and ETA; refreshed every 5 s), a
group (its progress, counts, callbacks, the members that did not succeed, linking to their job pages), and
the actions: seal, and cancel after a confirmation step. Every read and action is one of ``Admin.groups``'
(audited as ``web:<user>``).

A group's URL is ``/groups/<name>``, the name percent-encoded; a name with a ``/`` (or one that could be
mistaken for a path) is written ``~`` + its UTF-8 in unpadded base64url. With a shard map, ``?database=``
names the group's database (links carry it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from finejobs.admin import GroupDetail
from finejobs.admin.groups import GROUP_PAGE_LIMIT
from finejobs.errors import FinejobsError
from finejobs.groups import GROUP_STATES, GroupProgress
from finejobs.web.deps import Operator, Viewer, admin_for, console_of
from finejobs.web.pages_common import error_page, flash_redirect, signed_message
from finejobs.web.render import render
from finejobs.web.security import Principal

router = APIRouter()

LIST_LIMIT = min(100, GROUP_PAGE_LIMIT)
PROBLEMS_SHOWN = 20
REFRESH = "every 5s"
_MESSAGES = {
    "cancelled": "Group {0} cancelled: {1} waiting member(s) cancelled; running ones finish as they will.",
    "sealed": "Group {0} sealed: no job joins it any more.",
}


def group_key(name: str) -> str:
    """The path segment of a group's URL."""
    if name in (".", "..") or name.startswith("~") or "/" in name or "\\" in name or not name.isprintable():
        return "~" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return quote(name, safe="")


def name_of(key: str) -> str:
    if not key.startswith("~"):
        return key
    try:
        name = base64.b64decode(key[1:] + "=" * (-len(key[1:]) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        name = ""
    if not name:
        raise HTTPException(404, "no such group")
    return name


def _href(request: Request, many: bool) -> Callable[..., str]:
    def href(group: GroupProgress, action: str = "", *, live: bool = False) -> str:
        query = f"?{urlencode({'database': group.database})}" if many else ""
        return (f"{request.scope.get('root_path', '')}{'/partials' if live else ''}/groups/{group_key(group.name)}"
                + (f"/{action}" if action else "") + query)
    return href


def group_url(request: Request, group: GroupProgress) -> str:
    """The console URL of a group's page (with its database, when the queue has several)."""
    return _href(request, _many(request))(group)


def rate(per_second: float | None) -> str:
    """Members (or items) finished per second or minute."""
    if per_second is None:
        return "—"
    return f"{per_second:,.1f}/s" if per_second >= 1 else f"{per_second * 60:,.1f}/min"


def span(seconds: float | None) -> str:
    """A time left: ``45 s``, ``12 min``, ``3 h 20 min``, ``2 d 4 h``."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 90:
        return f"{whole} s"
    if whole < 5400:
        return f"{round(whole / 60)} min"
    if whole < 172800:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _many(request: Request) -> bool:
    return len(console_of(request).admin.queue.databases) > 1


def _common(request: Request) -> dict[str, Any]:
    many = _many(request)
    return {"href": _href(request, many), "many_databases": many, "refresh": REFRESH, "rate": rate, "span": span}


def _database(request: Request) -> str | None:
    raw = request.query_params.get("database") or None
    return None if raw is None else raw[:200]


# ------------------------------------------------------------------ the list


def _list_context(request: Request, who: Principal) -> dict[str, Any]:
    state = request.query_params.get("state", "")
    state = state if state in GROUP_STATES else ""
    found = admin_for(request, who).groups.list(state=state or None, limit=LIST_LIMIT)
    query = urlencode({"state": state}) if state else ""
    return {"groups": found, "state": state, "states": GROUP_STATES, "query": query, **_common(request)}


@router.get("/groups", response_class=HTMLResponse)
def groups_page(request: Request, who: Viewer) -> Response:
    """The newest groups with their state, progress bar, counts, rate and ETA."""
    return render(request, who, "groups.html", page="groups", **_list_context(request, who))


@router.get("/partials/groups", response_class=HTMLResponse)
def groups_live(request: Request, who: Viewer) -> Response:
    """The list's table alone (htmx swaps it in every few seconds)."""
    return render(request, who, "_groups_live.html", page="groups", live=True, **_list_context(request, who))


# ------------------------------------------------------------------ one group


def _detail(request: Request, who: Principal, key: str) -> GroupDetail:
    return admin_for(request, who).groups.get(name_of(key), database=_database(request), problems=PROBLEMS_SHOWN)


@router.get("/groups/{key}", response_class=HTMLResponse)
def group_page(request: Request, who: Viewer, key: str) -> Response:
    """A group: progress, counts, rate, ETA, callbacks, its newest problem members, its actions."""
    try:
        detail = _detail(request, who, key)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="groups")
    return render(request, who, "group.html", page="groups", g=detail.progress, problems=detail.problems,
                  flash=signed_message(request, who, _MESSAGES), **_common(request))


@router.get("/partials/groups/{key}", response_class=HTMLResponse)
def group_live(request: Request, who: Viewer, key: str) -> Response:
    try:
        detail = _detail(request, who, key)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="groups")
    return render(request, who, "_group_live.html", page="groups", live=True, g=detail.progress,
                  problems=detail.problems, **_common(request))


@router.get("/groups/{key}/cancel", response_class=HTMLResponse)
def cancel_review(request: Request, who: Operator, key: str) -> Response:
    """The confirmation step: what cancelling would do (waiting members cancelled, running ones finish)."""
    try:
        detail = _detail(request, who, key)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="groups")
    return render(request, who, "group_cancel.html", page="groups", g=detail.progress, **_common(request))


@router.post("/groups/{key}/cancel", response_class=HTMLResponse)
def cancel(request: Request, who: Operator, key: str) -> Response:
    """Cancel: seal the group and cancel its waiting members, then back to its page saying how many."""
    ops = admin_for(request, who).groups
    try:
        group = ops.get(name_of(key), database=_database(request), problems=0).progress
        if group.finished:
            raise FinejobsError(f"group {group.name!r} has already finished ({group.state}): nothing to cancel")
        cancelled = ops.cancel(group.name, reason=f"group cancelled by {who.name} in the console",
                               database=group.database)
    except FinejobsError as exc:
        return error_page(request, who, exc, page="groups")
    return _back(request, who, group, "cancelled", group.name, cancelled)


@router.post("/groups/{key}/seal", response_class=HTMLResponse)
def seal(request: Request, who: Operator, key: str) -> Response:
    """Seal an open group (one its producer never sealed): it finishes once every member is done."""
    try:
        group = admin_for(request, who).groups.seal(name_of(key), database=_database(request))
    except FinejobsError as exc:
        return error_page(request, who, exc, page="groups")
    return _back(request, who, group, "sealed", group.name)


def _back(request: Request, who: Principal, group: GroupProgress, code: str, *args: str | int) -> Response:
    query = urlencode({"database": group.database}) if _many(request) else ""
    return flash_redirect(request, who, f"/groups/{group_key(group.name)}", code, *args, query=query)

