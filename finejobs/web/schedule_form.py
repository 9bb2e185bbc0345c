"""The schedule form of the console: its fields parsed into a rule and the options of ``admin.schedules.add``
and ``update`` (pure code, no I/O), and a schedule turned back into the form's fields to edit it.

Every field arrives as text (``weekly_days`` as a list). A bad field raises ``FormError`` (an
InvalidJobOptions) whose ``field`` is the input to mark and whose message names it; nothing is written.
Moments (start, until, once, active from/until) are read in the form's timezone unless they carry an
offset (``2026-12-01 09:00``, ``2026-12-01T09:00:00+01:00``, ``...Z``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from finejobs._wallclock import zone as zone_of
from finejobs.errors import FinejobsError, InvalidJobOptions, PayloadError, UnknownKindError
from finejobs.limits import MAX_ATTEMPTS, MAX_MISFIRE_LIMIT, check_duration, check_text, check_time
from finejobs.schedule_ops import Schedule
from finejobs.scheduler import MISFIRES, OVERLAPS
from finejobs.schedules import OUTCOMES, Adaptive, Cron, DailyAt, Every, Once, RRule, Rule

RULE_TYPES: tuple[tuple[str, str], ...] = (
    ("interval", "every N seconds / minutes / hours / days / weeks / months / years"),
    ("daily", "daily at given times"), ("weekly", "weekly, on chosen days"),
    ("monthly_day", "monthly, on a day of the month"), ("monthly_nth", "monthly, on the nth weekday"),
    ("yearly_nth", "yearly, on the nth weekday of a month"), ("yearly_date", "yearly, on a date"),
    ("cron", "cron expression"), ("rrule", "RFC 5545 RRULE"), ("once", "once, at a moment"),
    ("adaptive", "adaptive: a delay after each run, by its outcome"))
UNITS = ("seconds", "minutes", "hours", "days", "weeks", "months", "years")
DAYS: tuple[tuple[str, str], ...] = (("MO", "Mon"), ("TU", "Tue"), ("WE", "Wed"), ("TH", "Thu"), ("FR", "Fri"),
                                     ("SA", "Sat"), ("SU", "Sun"))
NTHS: tuple[tuple[str, str], ...] = (("1", "first"), ("2", "second"), ("3", "third"), ("4", "fourth"),
                                     ("5", "fifth"), ("-1", "last"), ("-2", "second-to-last"))
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
# the field (and its label) a refusal of each rule type's rule itself marks
MAIN_FIELD = {"interval": ("interval_every", "every"), "daily": ("daily_times", "times"),
              "weekly": ("weekly_days", "days"), "monthly_day": ("monthly_day", "day of the month"),
              "monthly_nth": ("monthly_nth", "which weekday"), "yearly_nth": ("yearly_nth", "which weekday"),
              "yearly_date": ("yearly_date_day", "day"), "cron": ("cron", "cron"), "rrule": ("rrule", "RRULE"),
              "once": ("once_at", "at"), "adaptive": ("adaptive_success", "after success")}
COUNTED = ("interval", "weekly", "monthly_day", "monthly_nth", "yearly_nth", "yearly_date", "rrule")
UNBOUNDED = ("once", "adaptive")  # no start, count or until
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"(\d{1,15}(?:\.\d{1,6})?)(min|sec|[smhdw])")

Form = Mapping[str, Any]  # field -> str (weekly_days: a list of str)


class FormError(InvalidJobOptions):
    """A field of the schedule form is refused: ``field`` is the input, the message names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message[:600])
        self.field = field


@dataclass(frozen=True)
class Parsed:
    """The form, read: what ``admin.schedules.add(name, kind, rule, payload=..., paused=..., **options)`` takes."""

    name: str
    kind: str
    rule: Rule
    payload: Any
    paused: bool
    options: dict[str, Any]  # description, shard, priority, max_attempts, start, end, misfire..., expires_in


@lru_cache(maxsize=1)
def timezones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def text(form: Form, field: str) -> str:
    value = form.get(field)
    if isinstance(value, list | tuple):
        value = value[-1] if value else ""
    return "" if value is None else str(value)


def _strip(form: Form, field: str) -> str:
    return text(form, field).strip()


def blank_form() -> dict[str, Any]:
    """The values of a new schedule's form."""
    return {"rule_type": "interval", "interval_every": "1", "interval_unit": "hours", "tz": "UTC",
            "weekly_days": [], "weekly_every": "1", "weekly_at": "09:00", "monthly_day": "1",
            "monthly_day_every": "1", "monthly_day_at": "09:00", "monthly_nth": "1", "monthly_nth_weekday": "MO",
            "monthly_nth_every": "1", "monthly_nth_at": "09:00", "yearly_nth": "1", "yearly_nth_weekday": "SU",
            "yearly_nth_month": "1", "yearly_nth_at": "09:00", "yearly_date_day": "1", "yearly_date_month": "1",
            "yearly_date_at": "09:00", "daily_times": "06:00", "adaptive_success": "5m", "payload": "{}",
            "shard": "default", "misfire": "coalesce", "misfire_limit": "100", "misfire_grace": "60s",
            "overlap": "skip"}


# ------------------------------------------------------------------ small parsers


def _int(form: Form, field: str, label: str, *, low: int, high: int, default: int | None = None) -> int | None:
    raw = _strip(form, field)
    if not raw:
        return default
    if not re.fullmatch(r"[+-]?\d{1,12}", raw):
        raise FormError(field, f"{label}: {raw[:40]!r} is not a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise FormError(field, f"{label} must be within {low}..{high}, got {value}")
    return value


def _need(form: Form, field: str, label: str, *, low: int, high: int, what: str) -> int:
    found = _int(form, field, label, low=low, high=high)
    if found is None:
        raise FormError(field, f"{label}: {what}")
    return found


def parse_duration(field: str, label: str, raw: str) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``2w`` or plain seconds."""
    value = "".join(raw.split()).lower()
    seconds, position = 0.0, 0
    if re.fullmatch(r"\d{1,15}(\.\d{1,6})?", value):
        seconds, position = float(value), len(value)
    else:
        for match in _DURATION_PART.finditer(value):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _SECONDS[match.group(2)[0]]
            position = match.end()
    if not value or position != len(value):
        raise FormError(field, f"{label}: {raw[:40]!r} is not a duration (e.g. 90s, 5m, 1h30m, 2w)")
    if not math.isfinite(seconds) or seconds > 100 * 366 * 86400:
        raise FormError(field, f"{label}: {raw[:40]!r} is over the limit of 100 years")
    return timedelta(seconds=seconds)


def duration_text(value: timedelta | None) -> str:
    """A duration as the form shows it (``1h30m``, ``60s``, ``1.5s``)."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    if whole == 0:
        return "0s"
    parts = []
    for unit, size in _SECONDS.items():
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def _zone(form: Form) -> tuple[str, ZoneInfo]:
    name = _strip(form, "tz") or "UTC"
    if len(name) > 100 or not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", name):
        raise FormError("tz", f"timezone: {name[:60]!r} is not an IANA timezone (e.g. Europe/Paris)")
    try:
        return name, zone_of(name)
    except InvalidJobOptions:
        raise FormError("tz", f"timezone: unknown timezone {name!r} (e.g. Europe/Paris, UTC)") from None


def parse_moment(field: str, label: str, raw: str, zone: ZoneInfo) -> datetime | None:
    """A moment typed in the form: in ``zone`` unless it carries an offset; None when blank."""
    value = raw.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value[:41])
    except ValueError:
        raise FormError(field, f"{label}: {value[:40]!r} is not a date and time (e.g. 2026-12-01 09:00)") from None
    moment = moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)
    try:
        check_time(label, moment)
    except InvalidJobOptions as exc:
        raise FormError(field, str(exc)) from None
    return moment


def moment_text(value: datetime | None, zone: ZoneInfo) -> str:
    """A moment as the form shows it, in ``zone`` (with its offset when the local time alone is ambiguous)."""
    if value is None:
        return ""
    here = value.astimezone(zone)
    naive = here.replace(tzinfo=None)
    if naive.replace(tzinfo=zone) != value:  # the second of a doubled local time: say which
        return here.isoformat(" ")
    return naive.isoformat(" ", "minutes" if naive.second == naive.microsecond == 0 else "auto")


def _at(form: Form, field: str) -> str:
    return _time_of_day(field, _strip(form, field) or "00:00")


def _time_of_day(field: str, raw: str) -> str:
    if not re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", raw):
        raise FormError(field, f"time of day: {raw[:20]!r} is not HH:MM or HH:MM:SS")
    hour, minute, second = (int(p) for p in (raw + ":00")[:8].split(":"))
    if hour > 23 or minute > 59 or second > 59:
        raise FormError(field, f"time of day: {raw!r} is not a time of day (00:00 to 23:59:59)")
    return raw


def _choice(form: Form, field: str, label: str, choices: tuple[str, ...]) -> str:
    raw = _strip(form, field)
    if raw not in choices:
        raise FormError(field, f"{label} must be one of {', '.join(choices)}, got {raw[:40]!r}")
    return raw


# ------------------------------------------------------------------ the rule


def parse_rule(form: Form, *, now: datetime) -> Rule:
    """The rule the form describes. ``now`` is the start of a counted (or every-N-weeks) rule given none."""
    kind = _choice(form, "rule_type", "rule type", tuple(t for t, _ in RULE_TYPES))
    tz, zone = _zone(form)
    start = parse_moment("start", "start", text(form, "start"), zone)
    until = parse_moment("until", "until", text(form, "until"), zone)
    count = _int(form, "count", "count", low=1, high=10**9)
    if kind in UNBOUNDED:
        for field, value in (("start", start), ("count", count), ("until", until)):
            if value is not None:
                raise FormError(field, f"{field}: a rule of type {kind} takes no {field} (use active from / until)")
    if count is not None and kind not in COUNTED:
        raise FormError("count", f"count: a rule of type {kind} takes no count (give an until instead)")
    if start is not None and until is not None and until < start:
        raise FormError("until", f"until ({until.isoformat()}) is before start ({start.isoformat()})")
    anchor = start if start is not None else now.astimezone(zone).replace(microsecond=0)
    main, label = MAIN_FIELD[kind]
    try:
        return _rule(kind, form, tz=tz, zone=zone, start=start, until=until, count=count, anchor=anchor)
    except FormError:
        raise
    except (InvalidJobOptions, ValueError, OverflowError) as exc:
        raise FormError(main, _named(label, str(exc))) from None


def _named(label: str, message: str) -> str:
    return message if message.lower().startswith(label.lower()) else f"{label}: {message}"


def _rule(kind: str, form: Form, *, tz: str, zone: ZoneInfo, start: datetime | None, until: datetime | None,
          count: int | None, anchor: datetime) -> Rule:
    counted_start = start if count is None else anchor
    if kind == "interval":
        unit = _choice(form, "interval_unit", "unit", UNITS)
        raw = _strip(form, "interval_every")
        if unit == "seconds" and re.fullmatch(r"\d{1,12}\.\d{1,6}", raw):
            every: float = float(raw)
        else:
            every = _int(form, "interval_every", "every", low=1, high=10**12) or 0
        if every <= 0:
            raise FormError("interval_every", "every: give how many seconds, minutes... (a positive number)")
        amount: dict[str, Any] = {unit: int(every) if unit in ("days", "weeks", "months", "years") else every}
        return Every(**amount, start=counted_start, count=count, until=until, tz=tz)
    if kind == "daily":
        times = [t.strip() for t in _strip(form, "daily_times").replace(";", ",").split(",") if t.strip()]
        if not times:
            raise FormError("daily_times", "times: give one or more times of day, e.g. 06:00, 18:30")
        checked = [_time_of_day("daily_times", t) for t in times[:100]]
        return DailyAt(*checked, tz=tz, start=start, until=until)
    if kind == "cron":
        return Cron(_strip(form, "cron"), tz=tz, start=start, until=until)
    if kind == "rrule":
        rule_text = _strip(form, "rrule")
        upper = rule_text.upper()
        for field, value, part in (("count", count, "COUNT="), ("until", until, "UNTIL=")):
            if value is not None and part in upper:
                raise FormError(field, f"{field}: the RRULE already has {part[:-1]}; give it in one place")
        if count is not None:
            rule_text += f";COUNT={count}"
        if until is not None:
            rule_text += f";UNTIL={until.astimezone(ZoneInfo('UTC')):%Y%m%dT%H%M%SZ}"
        return RRule(rule_text, tz=tz, start=counted_start)
    if kind == "once":
        at = parse_moment("once_at", "at", text(form, "once_at"), zone)
        if at is None:
            raise FormError("once_at", "at: give the moment of the one run, e.g. 2026-12-01 09:00")
        return Once(at)
    if kind == "adaptive":
        delays: dict[str, timedelta] = {}
        for outcome in OUTCOMES:
            raw = _strip(form, f"adaptive_{outcome}")
            if raw:
                delays[f"on_{outcome}"] = parse_duration(f"adaptive_{outcome}", f"after {outcome}", raw)
        if "on_success" not in delays:
            raise FormError("adaptive_success", "after success: give the delay after a successful run, e.g. 5m")
        return Adaptive(**delays)
    return _calendar(kind, form, tz=tz, start=start, until=until, count=count, anchor=anchor)


def _calendar(kind: str, form: Form, *, tz: str, start: datetime | None, until: datetime | None,
              count: int | None, anchor: datetime) -> RRule:
    """weekly, monthly_day, monthly_nth, yearly_nth, yearly_date: RRule's friendlier constructors."""
    day_tokens = tuple(d for d, _ in DAYS)
    at = _at(form, f"{kind}_at")
    every = _int(form, f"{kind}_every", "every", low=1, high=5200, default=1) if kind in (
        "weekly", "monthly_day", "monthly_nth") else 1
    assert every is not None
    rule_start = anchor if (count is not None or every > 1) and start is None else start
    bounds: dict[str, Any] = {"at": at, "tz": tz, "start": rule_start, "count": count, "until": until}
    if kind == "weekly":
        raw = form.get("weekly_days") or []
        days = [raw] if isinstance(raw, str) else list(raw)
        bad = [str(d)[:10] for d in days if d not in day_tokens]
        if not days or bad:
            raise FormError("weekly_days", f"days: {bad[0]!r} is not a day (MO..SU)" if bad else
                            "days: tick at least one day of the week")
        return RRule.weekly(sorted(set(days), key=day_tokens.index), every=every, **bounds)
    nth_choices = tuple(n for n, _ in NTHS)
    if kind == "monthly_day":
        day = _need(form, "monthly_day", "day of the month", low=-31, high=31, what="1 to 31, or -1 (the last)")
        if day == 0:
            raise FormError("monthly_day", "day of the month: 1 to 31, or -1 for the last day")
        return RRule.monthly(day=day, every=every, **bounds)
    if kind == "monthly_nth":
        nth = int(_choice(form, "monthly_nth", "which", nth_choices))
        weekday = _choice(form, "monthly_nth_weekday", "weekday", day_tokens)
        return RRule.monthly(weekday=weekday, nth=nth, every=every, **bounds)
    month = _need(form, f"{kind}_month", "month", low=1, high=12, what="choose a month")
    if kind == "yearly_nth":
        nth = int(_choice(form, "yearly_nth", "which", nth_choices))
        weekday = _choice(form, "yearly_nth_weekday", "weekday", day_tokens)
        return RRule.yearly(month=month, weekday=weekday, nth=nth, **bounds)
    day = _need(form, "yearly_date_day", "day", low=1, high=31, what="1 to 31")
    return RRule.yearly(month=month, day=day, **bounds)


# ------------------------------------------------------------------ the whole form


def parse_form(form: Form, *, now: datetime, creating: bool = True) -> Parsed:
    """Every field of the form, checked; FormError for the first bad one."""
    name = text(form, "name") if creating else ""
    if creating:
        try:
            check_text("name", name, max_chars=200)
        except InvalidJobOptions as exc:
            raise FormError("name", str(exc)) from None
        if not name.strip():
            raise FormError("name", "name: give the schedule a name")
    kind = _strip(form, "kind")
    if not kind:
        raise FormError("kind", "kind: choose the job kind each tick enqueues")
    rule = parse_rule(form, now=now)
    _, zone = _zone(form)
    raw_payload = text(form, "payload").strip()
    payload: Any = None
    if raw_payload:
        try:
            payload = json.loads(raw_payload)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise FormError("payload", f"payload: not valid JSON ({exc})"[:300]) from None
        if not isinstance(payload, dict):
            raise FormError("payload", f"payload must be a JSON object ({{...}}), got {type(payload).__name__}")
    options: dict[str, Any] = {
        "description": text(form, "description"),
        "shard": _strip(form, "shard") or None,
        "priority": _int(form, "priority", "priority", low=-32768, high=32767),
        "max_attempts": _int(form, "max_attempts", "max attempts", low=1, high=MAX_ATTEMPTS),
        "start": parse_moment("active_from", "active from", text(form, "active_from"), zone),
        "end": parse_moment("active_until", "active until", text(form, "active_until"), zone),
        "misfire": _choice(form, "misfire", "misfire", MISFIRES),
        "misfire_limit": _int(form, "misfire_limit", "misfire limit", low=1, high=MAX_MISFIRE_LIMIT, default=100),
        "overlap": _choice(form, "overlap", "overlap", OVERLAPS),
    }
    if options["start"] and options["end"] and options["end"] < options["start"]:
        raise FormError("active_until", "active until is before active from")
    grace = _strip(form, "misfire_grace")
    options["misfire_grace"] = parse_duration("misfire_grace", "misfire grace", grace) if grace else timedelta(
        seconds=60)
    expires = _strip(form, "expires_in")
    options["expires_in"] = parse_duration("expires_in", "expires in", expires) if expires else None
    for field, label, strict in (("misfire_grace", "misfire grace", False), ("expires_in", "expires in", True)):
        try:
            check_duration(field, options[field], strict=strict)
        except InvalidJobOptions as exc:
            raise FormError(field, _named(label, str(exc))) from None
    paused = _strip(form, "paused").lower() in ("on", "true", "1", "yes")
    return Parsed(name=name, kind=kind, rule=rule, payload=payload, paused=paused, options=options)


def field_of(exc: FinejobsError, rule_type: str) -> str | None:
    """The form field a refusal of ``admin.schedules.add`` / ``update`` is about (None: the whole form)."""
    if isinstance(exc, FormError):
        return exc.field
    message = str(exc)
    if isinstance(exc, PayloadError) or message.startswith("payload"):
        return "payload"
    if isinstance(exc, UnknownKindError) or message.startswith("kind"):
        return "kind"
    for prefix, field in (("a schedule named", "name"), ("name", "name"), ("shard", "shard"),
                          ("schedule operations work in the default database", "shard"),
                          ("end (", "active_until"), ("description", "description"), ("priority", "priority"),
                          ("max_attempts", "max_attempts"),
                          ("rule:", MAIN_FIELD.get(rule_type, ("rule_type", ""))[0])):
        if message.startswith(prefix):
            return field
    return None


# ------------------------------------------------------------------ a schedule, back into the form


def form_from_schedule(schedule: Schedule) -> dict[str, Any]:
    """The form's fields for editing ``schedule`` (its rule as the most specific rule type that gives it back)."""
    rule = schedule.rule
    tz = getattr(rule, "tz", None) or schedule.timezone
    tz = tz if tz in timezones() else "UTC"
    zone = ZoneInfo(tz)
    form = blank_form()
    form.update({
        "name": schedule.name, "description": schedule.description, "kind": schedule.kind,
        "payload": json.dumps(schedule.payload, indent=2, ensure_ascii=False), "shard": schedule.shard,
        "priority": str(schedule.priority), "max_attempts": str(schedule.max_attempts),
        "active_from": moment_text(schedule.start, zone), "active_until": moment_text(schedule.end, zone),
        "misfire": schedule.misfire, "misfire_limit": str(schedule.misfire_limit),
        "misfire_grace": duration_text(schedule.misfire_grace), "overlap": schedule.overlap,
        "expires_in": duration_text(schedule.expires_in), "tz": tz, "paused": "on" if schedule.paused else ""})
    if rule is not None:
        form.update(rule_form(rule, zone))
    return form


def rule_form(rule: Rule, zone: ZoneInfo) -> dict[str, Any]:
    """The rule fields that give ``rule`` back."""
    bounds = {"start": moment_text(getattr(rule, "start", None) if getattr(rule, "explicit_start", True) else None,
                                   zone),
              "until": moment_text(getattr(rule, "until", None), zone),
              "count": "" if getattr(rule, "count", None) is None else str(rule.count)}
    if isinstance(rule, Once):
        return {"rule_type": "once", "once_at": moment_text(rule.at, zone), "start": "", "until": "", "count": ""}
    if isinstance(rule, Adaptive):
        return {"rule_type": "adaptive", "start": "", "until": "", "count": "",
                **{f"adaptive_{o}": duration_text(rule.delay(o)) for o in OUTCOMES}}
    if isinstance(rule, Every):
        return {"rule_type": "interval", **_every_fields(rule), **bounds}
    if isinstance(rule, DailyAt):
        times = ", ".join(t.isoformat("minutes" if t.second == 0 else "seconds") for t in rule.times)
        return {"rule_type": "daily", "daily_times": times, **bounds}
    if isinstance(rule, Cron):
        return {"rule_type": "cron", "cron": rule.expr, **bounds}
    if isinstance(rule, RRule):
        return _rrule_form(rule, bounds)
    return {"rule_type": "cron", "cron": "", **bounds}


def _every_fields(rule: Every) -> dict[str, str]:
    if rule.months:
        if rule.months % 12 == 0:
            return {"interval_every": str(rule.months // 12), "interval_unit": "years"}
        return {"interval_every": str(rule.months), "interval_unit": "months"}
    seconds = rule.step.total_seconds()
    for unit, size in (("weeks", 604800), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return {"interval_every": str(int(seconds // size)), "interval_unit": unit}
    return {"interval_every": f"{seconds:g}" if seconds != int(seconds) else str(int(seconds)),
            "interval_unit": "seconds"}


def _rrule_form(rule: RRule, bounds: dict[str, str]) -> dict[str, Any]:
    """The friendliest rule type whose fields rebuild exactly this RRULE; else the RRULE as it is."""
    raw = {"rule_type": "rrule", "rrule": rule.text, "start": bounds["start"], "until": "", "count": ""}
    p = dict(rule.parts)
    at = ":".join(f"{int(p.get(k, '0')):02d}" for k in ("BYHOUR", "BYMINUTE", "BYSECOND"))
    if at.endswith(":00"):
        at = at[:-3]
    every = str(rule.interval)
    nth = re.fullmatch(r"([+-]?\d)([A-Z]{2})", p.get("BYDAY", ""))
    candidates: list[dict[str, Any]] = []
    if rule.freq == "WEEKLY" and "BYDAY" in p:
        candidates.append({"rule_type": "weekly", "weekly_days": p["BYDAY"].split(","), "weekly_every": every,
                           "weekly_at": at})
    if rule.freq == "MONTHLY" and "BYMONTHDAY" in p:
        candidates.append({"rule_type": "monthly_day", "monthly_day": p["BYMONTHDAY"], "monthly_day_every": every,
                           "monthly_day_at": at})
    if rule.freq == "MONTHLY" and nth:
        candidates.append({"rule_type": "monthly_nth", "monthly_nth": str(int(nth.group(1))),
                           "monthly_nth_weekday": nth.group(2), "monthly_nth_every": every, "monthly_nth_at": at})
    if rule.freq == "YEARLY" and nth:
        candidates.append({"rule_type": "yearly_nth", "yearly_nth": str(int(nth.group(1))),
                           "yearly_nth_weekday": nth.group(2), "yearly_nth_month": p.get("BYMONTH", ""),
                           "yearly_nth_at": at})
    if rule.freq == "YEARLY" and "BYMONTHDAY" in p:
        candidates.append({"rule_type": "yearly_date", "yearly_date_day": p["BYMONTHDAY"],
                           "yearly_date_month": p.get("BYMONTH", ""), "yearly_date_at": at})
    wanted = rule.to_spec()
    for fields in candidates:
        form = {**fields, **bounds, "tz": rule.tz}
        try:
            rebuilt = parse_rule(form, now=rule.start or datetime(2001, 1, 1, tzinfo=ZoneInfo("UTC")))
        except InvalidJobOptions:
            continue
        if rebuilt.to_spec() == wanted:
            return fields | bounds
    return raw
