"""REST: schedules (list with search and sort, get with the next fires and recent runs, create with any rule,
edit, delete, pause, resume, pause all, resume all, run now, skip next, next fire times, run history): thin
views over ``finejobs.admin.Admin.schedules``.

A rule is JSON: ``{"type": "every", "minutes": 15, "count": 10, "start": ...}``, ``{"type": "weekly", "days":
["MO", "TH"], "at": "09:00"}``, ``{"type": "monthly", "weekday": "MO", "nth": -1}``, ``{"type": "yearly",
"month": 3, "weekday": "SU", "nth": 1}``, ``{"type": "cron", "expr": "0 6 * * MON"}``, ``{"type": "once",
"at": ...}``, daily_at, rrule or adaptive; the ``rule`` a schedule answers with is taken back as it is.
Schedule names may hold ``/``: the routes take the rest of the path as the name.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from finejobs._wallclock import zone
from finejobs.limits import check_duration, check_text
from finejobs.schedule_ops import Schedule, ScheduleRun
from finejobs.schedules import Adaptive, Cron, DailyAt, Every, Once, RRule, Rule
from finejobs.web import schemas
from finejobs.web.api_common import ACT, ACTION, ITEM, READ, Route, located, refuse
from finejobs.web.deps import Operator, Viewer, admin_for, scrub

router = APIRouter(tags=["schedules"], route_class=Route)

NAME_CHARS = 200
Sort = Literal["name", "kind", "next", "last", "status", "runs", "rule"]


NAME = "{name:path_name}"  # a name with "/" in it too (api_common)
Name = Annotated[str, Path(min_length=1, max_length=NAME_CHARS, description="the schedule's name")]


def _name(name: str) -> str:
    return check_text("name", name, max_chars=NAME_CHARS)


# ---------------------------------------------------------------- rules and options


def build_rule(spec: Any) -> Rule:
    """The finejobs rule a rule spec describes (a refusal names the field as pydantic's would, under the rule's
    type: ``["body", "rule", "every", "count"]``)."""
    with located("body", "rule", spec.type, names=type(spec).model_fields):
        return _rule(spec)


def _rule(spec: Any) -> Rule:
    bounds = {"start": getattr(spec, "start", None), "until": getattr(spec, "until", None)}
    tz = getattr(spec, "tz", None)
    if isinstance(spec, schemas.EveryRule):
        return Every(seconds=spec.seconds, minutes=spec.minutes, hours=spec.hours, days=spec.days, weeks=spec.weeks,
                     months=spec.months, years=spec.years, count=spec.count, tz=tz, **bounds)
    if isinstance(spec, schemas.WeeklyRule):
        return RRule.weekly(spec.days, at=spec.at, every=spec.every, tz=tz or "UTC", count=spec.count, **bounds)
    if isinstance(spec, schemas.MonthlyRule):
        return RRule.monthly(day=spec.day, weekday=spec.weekday, nth=spec.nth, at=spec.at, every=spec.every,
                             tz=tz or "UTC", count=spec.count, **bounds)
    if isinstance(spec, schemas.YearlyRule):
        return RRule.yearly(month=spec.month, day=spec.day, weekday=spec.weekday, nth=spec.nth, at=spec.at,
                            tz=tz or "UTC", count=spec.count, **bounds)
    if isinstance(spec, schemas.DailyAtRule):
        return DailyAt(*spec.times, tz=tz or "UTC", **bounds)
    if isinstance(spec, schemas.CronRule):
        return Cron(spec.expr, tz=tz or "UTC", **bounds)
    if isinstance(spec, schemas.RRuleRule):
        return RRule(spec.rrule, tz=tz, start=spec.start)
    if isinstance(spec, schemas.OnceRule):
        return Once(spec.at if tz is None else spec.at.astimezone(zone(tz)))
    assert isinstance(spec, schemas.AdaptiveRule)
    delays: dict[str, timedelta | None] = {
        f"on_{o}": check_duration(f"on_{o}", getattr(spec, f"on_{o}"), strict=False)
        for o in ("success", "idle", "error", "timeout")}
    success = delays.pop("on_success")
    assert success is not None
    return Adaptive(success, **delays)


_RENAMED = {"misfire_grace_seconds": "misfire_grace", "expires_in_seconds": "expires_in"}
_CLEARABLE = {"start", "end", "expires_in_seconds"}
_OPTIONS = tuple(schemas._ScheduleOptions.model_fields)


def _options(body: schemas._ScheduleOptions, *, nulls: bool) -> dict[str, Any]:
    """The options given, as admin.schedules.add/update take them (``nulls``: a null clears a clearable one)."""
    options: dict[str, Any] = {}
    for field in _OPTIONS:
        if field not in body.model_fields_set:
            continue
        value = getattr(body, field)
        if value is None and (not nulls or field not in _CLEARABLE):
            if nulls:
                raise refuse(f"{field}: must not be null (only {', '.join(sorted(_CLEARABLE))} can be cleared)",
                             "body", field)
            continue
        options[_RENAMED.get(field, field)] = value
    return options


def schedule_out(request: Request, schedule: Schedule) -> schemas.Schedule:
    data = schedule.to_json()
    if data["error"] is not None:
        data["error"] = scrub(request, data["error"])
    return schemas.Schedule.model_validate(data)


def run_out(request: Request, run: ScheduleRun) -> schemas.ScheduleRun:
    data = run.to_json()
    if data["error"] is not None:
        data["error"] = scrub(request, data["error"])
    return schemas.ScheduleRun.model_validate(data)


def _detail(request: Request, who: Any, schedule: Schedule) -> schemas.ScheduleDetail:
    runs = admin_for(request, who).schedules.runs(schedule.name, limit=10)
    return schemas.ScheduleDetail(**dict(schedule_out(request, schedule)), next_fires=schedule.next_fires(10),
                                  recent_runs=[run_out(request, r) for r in runs])


# ---------------------------------------------------------------- reading


@router.get("/schedules", responses=READ, summary="Schedules, with status, rule in words, next run, runs left")
def list_schedules(request: Request, who: Viewer,
                   search: Annotated[str | None, Query(max_length=NAME_CHARS,
                                                       description="in the name, description or kind")] = None,
                   sort: Sort = "name", descending: bool = False) -> list[schemas.Schedule]:
    if search is not None:
        check_text("search", search, max_chars=NAME_CHARS, empty=True)
    found = admin_for(request, who).schedules.list(search=search or None, sort=sort, descending=descending)
    return [schedule_out(request, s) for s in found]


@router.get(f"/schedules/{NAME}/runs", responses=ITEM, summary="Recent runs, newest first, with outcomes and errors")
def schedule_runs(request: Request, who: Viewer, name: Name,
                  limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[schemas.ScheduleRun]:
    runs = admin_for(request, who).schedules.runs(_name(name), limit=limit)
    return [run_out(request, r) for r in runs]


@router.get(f"/schedules/{NAME}/next-fires", responses=ITEM, summary="The next fire times")
def next_fires(request: Request, who: Viewer, name: Name,
               n: Annotated[int, Query(ge=1, le=100)] = 10) -> schemas.NextFires:
    schedule = admin_for(request, who).schedules.get(_name(name))
    return schemas.NextFires(name=schedule.name, next_fires=schedule.next_fires(n))


# ---------------------------------------------------------------- acting on all


@router.post("/schedules/pause-all", responses=ACTION, summary="Pause every schedule (of a kind)")
def pause_all(request: Request, who: Operator, body: schemas.KindOnly | None = None) -> schemas.Names:
    kind = body.kind if body is not None else None
    if kind is not None:
        check_text("kind", kind, max_chars=NAME_CHARS)
    return schemas.Names(names=admin_for(request, who).schedules.pause_all(kind=kind))


@router.post("/schedules/resume-all", responses=ACTION, summary="Resume every paused schedule (of a kind)")
def resume_all(request: Request, who: Operator, body: schemas.KindOnly | None = None) -> schemas.Names:
    kind = body.kind if body is not None else None
    if kind is not None:
        check_text("kind", kind, max_chars=NAME_CHARS)
    return schemas.Names(names=admin_for(request, who).schedules.resume_all(kind=kind))


# ---------------------------------------------------------------- acting on one


@router.post(f"/schedules/{NAME}/pause", responses=ACT, summary="Pause: no tick runs until resumed")
def pause(request: Request, who: Operator, name: Name) -> schemas.Schedule:
    return schedule_out(request, admin_for(request, who).schedules.pause(_name(name)))


@router.post(f"/schedules/{NAME}/resume", responses=ACT, summary="Resume (ticks missed while paused do not run)")
def resume(request: Request, who: Operator, name: Name) -> schemas.Schedule:
    return schedule_out(request, admin_for(request, who).schedules.resume(_name(name)))


@router.post(f"/schedules/{NAME}/run-now", responses=ACT, summary="Enqueue one run now, besides the ticks")
def run_now(request: Request, who: Operator, name: Name, body: schemas.RunNow | None = None) -> schemas.RunStarted:
    job_id = admin_for(request, who).schedules.run_now(_name(name), force=body.force if body is not None else False)
    return schemas.RunStarted(name=name, job_id=job_id)


@router.post(f"/schedules/{NAME}/skip-next", responses=ACT, summary="Skip the next tick")
def skip_next(request: Request, who: Operator, name: Name) -> schemas.Schedule:
    return schedule_out(request, admin_for(request, who).schedules.skip_next(_name(name)))


@router.post("/schedules", status_code=201, responses=ACTION, summary="Create a schedule")
def create(request: Request, who: Operator, body: schemas.ScheduleCreate) -> schemas.ScheduleDetail:
    rule = build_rule(body.rule)
    added = admin_for(request, who).schedules.add(body.name, body.kind, rule, paused=body.paused,
                                                  **_options(body, nulls=False))
    return _detail(request, who, added)


@router.get(f"/schedules/{NAME}", responses=ITEM, summary="A schedule, its next 10 fire times and recent runs")
def get_schedule(request: Request, who: Viewer, name: Name) -> schemas.ScheduleDetail:
    return _detail(request, who, admin_for(request, who).schedules.get(_name(name)))


@router.patch(f"/schedules/{NAME}", responses=ACT, summary="Change a schedule (only the options given)")
def update(request: Request, who: Operator, name: Name, body: schemas.ScheduleUpdate) -> schemas.ScheduleDetail:
    changes = _options(body, nulls=True)
    for field in ("kind", "rule"):
        if field in body.model_fields_set:
            if getattr(body, field) is None:
                raise refuse(f"{field}: must not be null", "body", field)
            changes[field] = build_rule(body.rule) if field == "rule" else body.kind
    if not changes:
        raise refuse("nothing to update: give a rule or an option", "body")
    return _detail(request, who, admin_for(request, who).schedules.update(_name(name), **changes))


@router.delete(f"/schedules/{NAME}", status_code=204, response_class=Response, responses=ACT,
               summary="Delete a schedule (the jobs it made stay)")
def delete(request: Request, who: Operator, name: Name) -> Response:
    admin_for(request, who).schedules.delete(_name(name))
    return Response(status_code=204)
