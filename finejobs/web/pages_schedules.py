"""The console's schedule pages: the list (status, rule in words, next run, runs left; search and sort), a
schedule (its options, next 10 fire times, run history with outcomes and errors, and its actions), the form
that creates and edits one, and the actions: pause, resume, run now, skip next, delete, pause all, resume
all. Every read and action is one of ``Admin.schedules``' (audited as ``web:<user>``); ``runs`` is bounded.

A schedule's URL is ``/schedules/<name>``, the name percent-encoded; a name that could be mistaken for a
path or another page (``new``, one with a ``/``...) is written ``~`` + its UTF-8 in unpadded base64url.
Actions answer 303 to the page they came from, with a ``done=`` code the page turns into a fixed message.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from finejobs.admin import Admin
from finejobs.errors import FinejobsError
from finejobs.schedule_ops import RUNS_LEFT_CAP, SORT_KEYS, Schedule
from finejobs.scheduler import MISFIRES, OVERLAPS, ScheduleNotFound
from finejobs.web import schedule_form as sf
from finejobs.web.deps import Operator, Viewer, admin_for, scrub
from finejobs.web.pages_common import flash_redirect, signed_message
from finejobs.web.render import render
from finejobs.web.security import Principal

router = APIRouter()

RUNS_SHOWN = 20  # runs on a schedule's page (Admin.schedules.runs is bounded by its limit)
NEXT_SHOWN = 10
STATUS_CLASS = {"active": "started", "paused": "paused", "finished": "finished", "failed": "failed"}
_RESERVED = frozenset({"new", "pause-all", "resume-all", ".", ".."})
_MESSAGES = {
    "created": "Schedule {0} created.", "updated": "Schedule {0} updated.", "unchanged": "{0}: nothing changed.",
    "paused": "Schedule {0} paused.", "resumed": "Schedule {0} resumed.", "skipped": "{0}: the next tick is skipped.",
    "ran": "{0}: job {1} enqueued to run now.", "deleted": "Schedule {0} deleted (the jobs it made stay).",
    "paused-all": "Paused {0} schedule(s).", "resumed-all": "Resumed {0} schedule(s).",
}


def schedule_key(name: str) -> str:
    """The path segment of a schedule's URL."""
    if name in _RESERVED or name.startswith("~") or "/" in name or "\\" in name or not name.isprintable():
        return "~" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return quote(name, safe="")


def name_of(key: str) -> str:
    if not key.startswith("~"):
        return key
    try:
        return base64.urlsafe_b64decode(key[1:] + "=" * (-len(key[1:]) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(404, "no such schedule") from None


def _url(request: Request, path: str, **query: Any) -> str:
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{request.scope.get('root_path', '')}{path}" + (f"?{urlencode(given)}" if given else "")


def _href(request: Request) -> Callable[..., str]:
    def href(name: str, action: str = "") -> str:
        return _url(request, f"/schedules/{schedule_key(name)}" + (f"/{action}" if action else ""))
    return href


def _done(request: Request, who: Principal, path: str, done: str, *args: str | int) -> Response:
    """303 to ``path``, which then says what was done (signed for ``who``: a link cannot make it claim more)."""
    return flash_redirect(request, who, path, done, *args)


def _flash(request: Request, who: Principal) -> str | None:
    return signed_message(request, who, _MESSAGES)


async def form_fields(request: Request) -> dict[str, Any]:
    """The urlencoded form of a POST as field -> text (``weekly_days``: every value)."""
    form = await request.form()
    fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    fields["weekly_days"] = [v for v in form.getlist("weekly_days") if isinstance(v, str)]
    return fields


Fields = Annotated[dict[str, Any], Depends(form_fields)]


def _get(admin: Admin, name: str) -> Schedule:
    try:
        return admin.schedules.get(name)
    except ScheduleNotFound:
        raise HTTPException(404, f"no schedule named {name[:200]!r}") from None


def _local(schedule: Schedule) -> Callable[[datetime | None], str]:
    zone = ZoneInfo(schedule.timezone) if schedule.timezone in sf.timezones() else ZoneInfo("UTC")

    def local(value: datetime | None) -> str:
        return "—" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    return local


def _left(schedule: Schedule) -> str:
    if schedule.runs_left is None:
        return "—"
    return f"{schedule.runs_left:,}+" if schedule.runs_left >= RUNS_LEFT_CAP else str(schedule.runs_left)


def _common(request: Request) -> dict[str, Any]:
    return {"href": _href(request), "status_class": STATUS_CLASS, "left": _left, "iso": _iso}


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


# ------------------------------------------------------------------ the list


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(request: Request, who: Viewer, q: str = "", sort: str = "name", desc: str = "") -> Response:
    """Every schedule with its status, rule in words, next and last run, runs and runs left."""
    admin = admin_for(request, who)
    search = q.strip()[:200]
    sort = sort if sort in SORT_KEYS else "name"
    descending = desc in ("1", "true", "on")
    found = admin.schedules.list(search=search or None, sort=sort, descending=descending)
    def sort_url(column: str) -> str:  # the current column again: the other direction
        return _url(request, "/schedules", q=search, sort=column,
                    desc="1" if column == sort and not descending else "")

    return render(request, who, "schedules.html", page="schedules", schedules=found, q=search, sort=sort,
                  desc=descending, sort_url=sort_url, kinds=sorted({s.kind for s in found}),
                  flash=_flash(request, who), **_common(request))


@router.post("/schedules/pause-all")
def pause_all(request: Request, who: Operator, fields: Fields) -> Response:
    kind = sf.text(fields, "kind").strip() or None
    names = admin_for(request, who).schedules.pause_all(kind=kind)
    return _done(request, who, "/schedules", "paused-all", len(names))


@router.post("/schedules/resume-all")
def resume_all(request: Request, who: Operator, fields: Fields) -> Response:
    kind = sf.text(fields, "kind").strip() or None
    names = admin_for(request, who).schedules.resume_all(kind=kind)
    return _done(request, who, "/schedules", "resumed-all", len(names))


# ------------------------------------------------------------------ the form


def _form_page(request: Request, who: Principal, admin: Admin, values: dict[str, Any], *, schedule: Schedule | None,
               error: FinejobsError | None = None) -> Response:
    field = sf.field_of(error, sf.text(values, "rule_type")) if error is not None else None
    kinds = [k.name for k in admin.kinds()]
    current = sf.text(values, "kind")
    if current and current not in kinds:
        kinds.append(current)
    return render(request, who, "schedules_form.html", page="schedules", form=values, schedule=schedule,
                  kinds=kinds, rule_types=sf.RULE_TYPES, units=sf.UNITS, days=sf.DAYS, nths=sf.NTHS,
                  months=[(str(i), m) for i, m in enumerate(sf.MONTHS, 1)], misfires=MISFIRES, overlaps=OVERLAPS,
                  timezones=sf.timezones(),
                  counted=sf.COUNTED, unbounded=sf.UNBOUNDED, error_field=field,
                  flash=scrub(request, error) if error is not None else None, flash_kind="error",
                  status_code=422 if error is not None else 200, **_common(request))


@router.get("/schedules/new", response_class=HTMLResponse)
def new_schedule(request: Request, who: Operator) -> Response:
    admin = admin_for(request, who)
    values = sf.blank_form()
    kinds = admin.kinds()
    if kinds:
        values["kind"] = kinds[0].name
    return _form_page(request, who, admin, values, schedule=None)


@router.post("/schedules")
def create_schedule(request: Request, who: Operator, fields: Fields) -> Response:
    admin = admin_for(request, who)
    try:
        parsed = sf.parse_form(fields, now=admin.queue.clock())
        admin.schedules.add(parsed.name, parsed.kind, parsed.rule, payload=parsed.payload, paused=parsed.paused,
                            **parsed.options)
    except FinejobsError as exc:
        return _form_page(request, who, admin, fields, schedule=None, error=exc)
    return _done(request, who, f"/schedules/{schedule_key(parsed.name)}", "created", parsed.name)


@router.get("/schedules/{key}/edit", response_class=HTMLResponse)
def edit_schedule(request: Request, who: Operator, key: str) -> Response:
    admin = admin_for(request, who)
    schedule = _get(admin, name_of(key))
    return _form_page(request, who, admin, sf.form_from_schedule(schedule), schedule=schedule)


def _changes(schedule: Schedule, parsed: sf.Parsed) -> dict[str, Any]:
    """What the form changes: only that goes to update (the audit log names it, and an unchanged rule keeps
    the next fire, a skipped tick included). A blank priority or max attempts means the kind's default."""
    wanted: dict[str, Any] = {**parsed.options, "kind": parsed.kind,
                              "payload": {} if parsed.payload is None else parsed.payload}
    changes = {k: v for k, v in wanted.items() if v != getattr(schedule, k)}
    if schedule.rule is None or parsed.rule.to_spec() != schedule.rule.to_spec():
        changes["rule"] = parsed.rule
    return changes


@router.post("/schedules/{key}")
def update_schedule(request: Request, who: Operator, key: str, fields: Fields) -> Response:
    admin = admin_for(request, who)
    schedule = _get(admin, name_of(key))
    values = {**fields, "name": schedule.name}
    try:
        parsed = sf.parse_form(values, now=admin.queue.clock(), creating=False)
        changes = _changes(schedule, parsed)
        if changes:
            admin.schedules.update(schedule.name, **changes)
    except FinejobsError as exc:
        return _form_page(request, who, admin, values, schedule=schedule, error=exc)
    return _done(request, who, f"/schedules/{key}", "updated" if changes else "unchanged", schedule.name)


# ------------------------------------------------------------------ one schedule


def _detail(request: Request, who: Principal, admin: Admin, schedule: Schedule, *, flash: str | None = None,
            flash_kind: str = "ok", status_code: int = 200) -> Response:
    runs = admin.schedules.runs(schedule.name, limit=RUNS_SHOWN)
    return render(request, who, "schedules_detail.html", page="schedules", s=schedule,
                  next_fires=schedule.next_fires(NEXT_SHOWN), runs=runs, local=_local(schedule), flash=flash,
                  flash_kind=flash_kind, status_code=status_code, **_common(request))


@router.get("/schedules/{key}", response_class=HTMLResponse)
def schedule_page(request: Request, who: Viewer, key: str) -> Response:
    admin = admin_for(request, who)
    return _detail(request, who, admin, _get(admin, name_of(key)), flash=_flash(request, who))


@router.get("/schedules/{key}/delete", response_class=HTMLResponse)
def confirm_delete(request: Request, who: Operator, key: str) -> Response:
    schedule = _get(admin_for(request, who), name_of(key))
    return render(request, who, "schedules_delete.html", page="schedules", s=schedule, **_common(request))


@router.post("/schedules/{key}/delete")
def delete_schedule(request: Request, who: Operator, key: str) -> Response:
    admin = admin_for(request, who)
    name = name_of(key)
    try:
        admin.schedules.delete(name)
    except ScheduleNotFound:
        raise HTTPException(404, f"no schedule named {name[:200]!r}") from None
    return _done(request, who, "/schedules", "deleted", name)


def _act(request: Request, who: Principal, key: str, fields: dict[str, Any], done: str,
         action: Callable[[Admin, str], int | None]) -> Response:
    admin = admin_for(request, who)
    schedule = _get(admin, name_of(key))
    try:
        job = action(admin, schedule.name)
    except ScheduleNotFound:
        raise HTTPException(404, f"no schedule named {schedule.name[:200]!r}") from None
    except FinejobsError as exc:  # refused (a run still unfinished, no next tick...): said on the page
        return _detail(request, who, admin, _get(admin, schedule.name), flash=scrub(request, exc), flash_kind="error",
                       status_code=409)
    path = "/schedules" if sf.text(fields, "back") == "list" else f"/schedules/{key}"
    return _done(request, who, path, done, schedule.name, *([] if job is None else [job]))


@router.post("/schedules/{key}/pause")
def pause(request: Request, who: Operator, key: str, fields: Fields) -> Response:
    return _act(request, who, key, fields, "paused", lambda admin, name: _none(admin.schedules.pause(name)))


@router.post("/schedules/{key}/resume")
def resume(request: Request, who: Operator, key: str, fields: Fields) -> Response:
    return _act(request, who, key, fields, "resumed", lambda admin, name: _none(admin.schedules.resume(name)))


@router.post("/schedules/{key}/skip-next")
def skip_next(request: Request, who: Operator, key: str, fields: Fields) -> Response:
    return _act(request, who, key, fields, "skipped", lambda admin, name: _none(admin.schedules.skip_next(name)))


@router.post("/schedules/{key}/run-now")
def run_now(request: Request, who: Operator, key: str, fields: Fields) -> Response:
    force = sf.text(fields, "force") == "on"
    return _act(request, who, key, fields, "ran",
                lambda admin, name: admin.schedules.run_now(name, force=force))


def _none(_: object) -> None:
    return None
