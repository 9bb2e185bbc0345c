"""Schedule rules. Each answers ``next_after(dt)``: the first fire strictly after ``dt``, or None.

```python
Once(datetime(2026, 12, 1, 9, tzinfo=tz))
Every(timedelta(weeks=2), start=datetime(2026, 11, 23, 9, tzinfo=tz), count=10)    # or until=...
Every(months=1, start=...)                       # calendar months from start (31 Jan -> 28 Feb -> 31 Mar)
Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam")   # 5 or 6 fields (seconds first), L, W, #, LW, nL
RRule("FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6;BYMINUTE=0", tz="Europe/Madrid", start=...)
RRule.weekly("MO", every=2, at="09:00", start=...);  RRule.monthly(weekday="MO", nth=-1, at="06:00")
DailyAt("00:00", tz="Europe/Madrid")
Adaptive(on_success=timedelta(minutes=5), on_idle=timedelta(minutes=30), on_error=timedelta(minutes=1))
```
Fires are aware datetimes in UTC, within finejobs.limits' time range (a rule whose next fire would leave
it is exhausted). Calendar rules follow the DST rule in finejobs._wallclock. Rules are stored as JSON specs
(``rule.to_spec()`` / ``rule_from_spec(spec)``), never pickled. Bad arguments raise InvalidJobOptions (a
ValueError) naming them; so do rules that could never fire (``Cron("0 0 L-30 2 *")``, an RRULE for 30
February, an ``until`` before ``start``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from dateutil.relativedelta import relativedelta

from finejobs._rrule import RRule
from finejobs._wallclock import (
    MICROSECOND,
    Rule,
    WallClockRule,
    aware,
    bounds_from_spec,
    check_can_fire,
    first_fire,
    from_iso,
    in_range,
    iso,
    local,
    named_refusals,
    next_fire,
    parse_time,
    positive_count,
    resolve,
    runs_left,
    tz_name,
    utc,
    zone,
)
from finejobs.errors import InvalidJobOptions
from finejobs.limits import MAX_DURATION, MAX_TIME, MIN_TIME, check_duration

__all__ = ["Adaptive", "Cron", "DailyAt", "Every", "Once", "Outcome", "RRule", "Rule", "check_can_fire", "first_fire",
           "next_fire", "rule_from_spec", "runs_left"]

Outcome = Literal["success", "idle", "error", "timeout"]
OUTCOMES: tuple[Outcome, ...] = ("success", "idle", "error", "timeout")
_DAY = timedelta(days=1)


def _words(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"


class Once(Rule):
    """Fires once, at ``at``."""

    type = "once"

    @named_refusals("Once")
    def __init__(self, at: datetime) -> None:
        if at is None:
            raise InvalidJobOptions("at must be a datetime, got None")
        when = aware("at", at)
        assert when is not None
        self.at = when
        key = getattr(at.tzinfo, "key", None)
        self.tz = key if isinstance(key, str) else "UTC"

    def next_after(self, dt: datetime) -> datetime | None:
        return self.at if self.at > utc(dt) else None

    @property
    def bounded(self) -> bool:
        return True

    @property
    def earliest(self) -> datetime | None:
        return self.at

    def describe(self) -> str:
        return f"once at {self.at.astimezone(zone(self.tz)):%Y-%m-%d %H:%M:%S %Z}"

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "at": iso(self.at), "tz": self.tz}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Once:
        at = from_iso(spec["at"])
        assert at is not None
        return cls(at.astimezone(zone(spec.get("tz") or "UTC")))


class Every(Rule):
    """Every N seconds, minutes, hours, days, weeks, months or years from ``start``.

    Intervals under a day (or not a whole number of days) are elapsed time: every 90 minutes is every
    90 real minutes, through DST changes. Whole days and weeks keep the local time of ``start`` in its
    timezone (09:00 stays 09:00 after a DST change), and months and years are calendar months from
    ``start`` (31 January, 28 February, 31 March...). Forever, ``count`` times, or ``until`` a moment.
    Without ``start``, fires are aligned on 1970-01-01 00:00 in ``tz`` (every 15 minutes: :00, :15...).
    """

    type = "every"

    @named_refusals("Every")
    def __init__(self, interval: timedelta | None = None, *, seconds: float = 0, minutes: float = 0,
                 hours: float = 0, days: int = 0, weeks: int = 0, months: int = 0, years: int = 0,
                 start: datetime | None = None, count: int | None = None, until: datetime | None = None,
                 tz: str | ZoneInfo | None = None) -> None:
        if interval is not None and not isinstance(interval, timedelta):
            raise InvalidJobOptions(f"interval must be a timedelta, got {type(interval).__name__}")
        for name, value in (("seconds", seconds), ("minutes", minutes), ("hours", hours), ("days", days),
                            ("weeks", weeks), ("months", months), ("years", years)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise InvalidJobOptions(f"{name} must be a number, got {value!r}"[:300])
        for name, value in (("months", months), ("years", years)):
            if abs(value) > 10**6:
                raise InvalidJobOptions(f"the interval (every {value:g} {name}) is over the limit of 100 years")
            if value != int(value):
                raise InvalidJobOptions(f"{name} must be a whole number, got {value!r}")
        try:
            step = (interval or timedelta(0)) + timedelta(seconds=seconds, minutes=minutes, hours=hours,
                                                          days=days, weeks=weeks)
        except OverflowError:
            raise InvalidJobOptions("the interval is over the limit of 100 years") from None
        self.months = int(years) * 12 + int(months)
        if step < timedelta(0) or self.months < 0:
            raise InvalidJobOptions("interval: an interval must be positive")
        if self.months and step:
            raise InvalidJobOptions("interval: give either months/years or a time interval, not both")
        if not self.months and step <= timedelta(0):
            raise InvalidJobOptions("interval: an interval must be positive")
        if self.months > MAX_DURATION.days // 365 * 12:
            raise InvalidJobOptions(f"the interval (every {self.months} months) is over the limit of 100 years")
        if not self.months and step > MAX_DURATION:
            raise InvalidJobOptions(f"the interval (every {step}) is over the limit of 100 years "
                                    f"({MAX_DURATION.days:,} days)")
        self.step = step
        start_utc = aware("start", start)
        start_zone = getattr(getattr(start, "tzinfo", None), "key", None)
        self.tz = tz_name(tz if tz is not None else start_zone if isinstance(start_zone, str) else None)
        self.zone = zone(self.tz)
        if count is not None:
            positive_count(count)
        if count is not None and start_utc is None:
            raise InvalidJobOptions("count needs a start: the first of the runs it counts")
        self.explicit_start = start_utc is not None
        self.start = start_utc or datetime(1970, 1, 1, tzinfo=self.zone).astimezone(UTC)
        self.count = count
        self.until = aware("until", until)
        if self.until is not None and self.until < self.start:
            raise InvalidJobOptions(f"until ({self.until.isoformat()}) is before start ({self.start.isoformat()}): "
                                    "the rule could never fire")
        self.mode = "months" if self.months else ("days" if step % _DAY == timedelta(0) else "elapsed")
        self._wall_start = local(self.start, self.zone)

    @property
    def bounded(self) -> bool:
        return self.count is not None or self.until is not None

    @property
    def earliest(self) -> datetime | None:
        return self.start if self.explicit_start else None

    def fire(self, n: int) -> datetime | None:
        """The n-th fire (from 0), ignoring count and until; None past the end of the time range."""
        try:
            if self.mode == "elapsed":
                return in_range(self.start + n * self.step)
            if self.mode == "days":
                wall = self._wall_start + n * self.step
            else:
                wall = self._wall_start + relativedelta(months=n * self.months)
            if wall.year >= MAX_TIME.year and wall > local(MAX_TIME, self.zone):
                return None
            return in_range(resolve(wall, self.zone, False)[0])
        except (OverflowError, ValueError):  # past year 9999
            return None

    def _estimate(self, t: datetime) -> int:
        if t < self.start:
            return 0
        if self.mode == "elapsed":
            return (t - self.start) // self.step + 1
        if self.mode == "days":
            return max(0, (local(t, self.zone) - self._wall_start) // self.step - 1)
        wall = local(t, self.zone)
        months = (wall.year - self._wall_start.year) * 12 + wall.month - self._wall_start.month
        return max(0, months // self.months - 1)

    def _index_after(self, t: datetime) -> int | None:
        """The index of the first fire strictly after ``t``; None when it would leave the time range."""
        if t >= MAX_TIME:
            return None
        n = self._estimate(max(t, MIN_TIME))
        while True:
            found = self.fire(n)
            if found is None:
                return None
            if found > t:
                return n
            n += 1

    def next_after(self, dt: datetime) -> datetime | None:
        n = self._index_after(utc(dt))
        if n is None or (self.count is not None and n >= self.count):
            return None
        found = self.fire(n)
        if found is None or (self.until is not None and found > self.until):
            return None
        return found

    def next_occurrence(self, dt: datetime) -> datetime | None:
        n = self._index_after(utc(dt))
        found = self.fire(n) if n is not None else None
        if found is None or (self.until is not None and found > self.until):
            return None
        return found

    def remaining(self, after: datetime, cap: int = 10_000) -> int | None:
        if self.count is not None:
            n = self._index_after(utc(after))
            if n is None:
                return 0
            left = max(0, self.count - n)
            if self.until is not None:
                return len(self.fires(after, min(cap, left)))
            return min(cap, left)
        return super().remaining(after, cap)

    def describe(self) -> str:
        if self.months:
            what = (f"{self.months // 12} year{'s' if self.months != 12 else ''}" if self.months % 12 == 0
                    else f"{self.months} month{'s' if self.months != 1 else ''}")
        else:
            what = _words(self.step)
        words = [f"every {what}"]
        if self.explicit_start:
            words.append(f"from {self.start.astimezone(self.zone):%Y-%m-%d %H:%M:%S} ({self.tz})")
        elif self.mode != "elapsed" or self.tz != "UTC":
            words.append(f"({self.tz})")
        if self.count is not None:
            words.append(f"{self.count} time{'s' if self.count != 1 else ''}")
        if self.until is not None:
            words.append(f"until {self.until.astimezone(self.zone):%Y-%m-%d %H:%M:%S}")
        return ", ".join([" ".join(words[:2]), *words[2:]]) if len(words) > 2 else " ".join(words)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "seconds": self.step.total_seconds(), "months": self.months, "tz": self.tz,
                "start": iso(self.start) if self.explicit_start else None, "count": self.count,
                "until": iso(self.until)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Every:
        return cls(timedelta(seconds=float(spec.get("seconds") or 0)), months=int(spec.get("months") or 0),
                   tz=spec.get("tz") or "UTC", start=from_iso(spec.get("start")), count=spec.get("count"),
                   until=from_iso(spec.get("until")))


class DailyAt(WallClockRule):
    """Every day at one or more local times (``"HH:MM"`` or ``"HH:MM:SS"``) in ``tz``."""

    type = "daily_at"

    def __init__(self, *times: str | time, tz: str | ZoneInfo | None = "UTC", start: datetime | None = None,
                 until: datetime | None = None) -> None:
        if not times:
            raise InvalidJobOptions("DailyAt needs at least one time of day, e.g. DailyAt('06:00')")
        self.times = tuple(sorted({parse_time(t) for t in times}))
        super().__init__(tz=tz, start=start, until=until, count=None)

    def candidates(self, after: datetime) -> Iterator[datetime]:
        day = after.date()
        while True:
            for t in self.times:
                candidate = datetime.combine(day, t)
                if candidate > after:
                    yield candidate
            day += _DAY

    def describe(self) -> str:
        times = ", ".join(t.isoformat("minutes" if t.second == 0 else "seconds") for t in self.times)
        return f"daily at {times} ({self.tz}){self._bounds_words()}"

    def to_spec(self) -> dict[str, Any]:
        spec = {"type": self.type, "times": [t.isoformat() for t in self.times], **self._bounds_spec()}
        spec.pop("count")
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DailyAt:
        bounds = bounds_from_spec(spec)
        return cls(*spec["times"], tz=bounds["tz"], start=bounds["start"], until=bounds["until"])


_CRON_DOW_NAMES = {name: str(i) for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_NEAREST_WEEKDAY = re.compile(r"^(\d{1,2})W$")
_LAST_MINUS = re.compile(r"^L-(\d{1,2})$")


class Cron(WallClockRule):
    """A cron expression in ``tz``: 5 fields, or 6 with seconds first.

    Fields: [second] minute hour day-of-month month day-of-week (0 or 7 = Sunday, names allowed).
    Extensions: ``L`` (last day of the month), ``L-3`` (three days before it), ``LW`` (last weekday),
    ``15W`` (the weekday nearest the 15th, within the month), ``5L`` / ``FRIL`` (last Friday),
    ``MON#2`` (second Monday), ``?`` (same as ``*``). When both day fields are restricted, a day matching
    either fires (classic cron). Evaluated with cronsim on local wall-clock time.
    """

    type = "cron"

    def __init__(self, expr: str, tz: str | ZoneInfo | None = "UTC", *, start: datetime | None = None,
                 until: datetime | None = None) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise InvalidJobOptions("cron: a cron expression must be a non-empty string")
        if len(expr) > 1000:
            raise InvalidJobOptions(f"cron: the expression has {len(expr)} characters, over the limit of 1000")
        self.expr = " ".join(expr.split())
        fields = self.expr.upper().split()
        if len(fields) not in (5, 6):
            raise InvalidJobOptions(f"cron expression {expr!r} has {len(fields)} fields: expected 5, or 6 with "
                                    "seconds")
        self.seconds_field = len(fields) == 6
        fields = [f.replace("?", "*") for f in fields]
        offset = 1 if self.seconds_field else 0
        dom, dow = fields[offset + 2], fields[offset + 4]
        for name, digit in _CRON_DOW_NAMES.items():
            dow = re.sub(rf"\b{name}L\b", f"{digit}L", dow)
        self._special: tuple[str, int] | None = None
        match = _NEAREST_WEEKDAY.match(dom) or _LAST_MINUS.match(dom)
        if match:
            self._special = ("W" if dom.endswith("W") else "L-", int(match.group(1)))
            if dow != "*":
                raise InvalidJobOptions(f"cron expression {expr!r}: {dom} cannot be combined with a day of week")
            if self._special[0] == "W" and not 1 <= self._special[1] <= 31:
                raise InvalidJobOptions(f"cron expression {expr!r}: bad day-of-month {dom}")
            dom = "1"
        fields[offset + 2], fields[offset + 4] = dom, dow
        self._fields = fields
        self._cronsim_expr = " ".join(fields)
        try:
            self._months = CronSim(self._cronsim_expr, datetime(2000, 1, 1)).months
        except CronSimError as exc:
            any_month = list(fields)
            any_month[offset + 3] = "*"
            try:  # valid with every month: the day is in none of its months (30 February)
                CronSim(" ".join(any_month), datetime(2000, 1, 1))
            except CronSimError:
                raise InvalidJobOptions(f"invalid cron expression {expr!r}: {exc}") from None
            raise InvalidJobOptions(f"cron expression {expr!r} never fires: no month of it has that day "
                                    f"({exc})") from None
        if self._special is not None:  # the day must exist in one of its months (29 February counts)
            longest = max(29 if m == 2 else 30 if m in (4, 6, 9, 11) else 31 for m in self._months)
            kind, n = self._special
            if (kind == "L-" and longest - n < 1) or (kind == "W" and n > longest):
                raise InvalidJobOptions(f"cron expression {expr!r} never fires: no month of it has that day")
        self.both = fields[offset + 1].startswith("*")
        super().__init__(tz=tz, start=start, until=until, count=None)

    def _special_day(self, year: int, month: int) -> int | None:
        assert self._special is not None
        kind, n = self._special
        last = (date(year + month // 12, month % 12 + 1, 1) - _DAY).day
        if kind == "L-":
            return last - n if last - n >= 1 else None
        if n > last:
            return None
        day = date(year, month, n)
        if day.weekday() == 5:  # Saturday: Friday before, or Monday after when the 1st is a Saturday
            day = day - _DAY if n > 1 else day + 2 * _DAY
        elif day.weekday() == 6:  # Sunday: Monday after, or Friday before when it is the last day
            day = day + _DAY if n < last else day - 2 * _DAY
        return day.day

    def candidates(self, after: datetime) -> Iterator[datetime]:
        if self._special is None:
            yield from CronSim(self._cronsim_expr, after)
            return
        offset = 1 if self.seconds_field else 0
        year, month = after.year, after.month
        for _ in range(12 * 50):
            day = self._special_day(year, month) if month in self._months else None
            if day is not None and date(year, month, day) >= after.date():
                fields = list(self._fields)
                fields[offset + 2], fields[offset + 3] = str(day), str(month)
                begin = max(after, datetime(year, month, day) - timedelta(seconds=1))
                for candidate in CronSim(" ".join(fields), begin):
                    if candidate.date() != date(year, month, day):
                        break
                    yield candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def describe(self) -> str:
        try:
            words = CronSim(self.expr.replace("?", "*"), datetime(2000, 1, 1)).explain()
        except Exception:
            words = f"cron '{self.expr}'"
        return f"{words} ({self.tz}){self._bounds_words()}"

    def to_spec(self) -> dict[str, Any]:
        spec = {"type": self.type, "expr": self.expr, **self._bounds_spec()}
        spec.pop("count")
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Cron:
        bounds = bounds_from_spec(spec)
        return cls(spec["expr"], tz=bounds["tz"], start=bounds["start"], until=bounds["until"])


class Adaptive(Rule):
    """The next run comes a delay after the previous run finished, the delay chosen by its outcome.

    ``on_idle`` defaults to ``on_success``, ``on_error`` to ``on_success``, ``on_timeout`` to ``on_error``.
    A handler returns ``finejobs.Idle`` to say it found nothing to do. ``next_after(dt)`` is the next run
    after a successful run that finished at ``dt``; the scheduler uses ``next_after_outcome``.
    """

    type = "adaptive"
    after_runs = True

    def __init__(self, on_success: timedelta, on_idle: timedelta | None = None, on_error: timedelta | None = None,
                 on_timeout: timedelta | None = None) -> None:
        self.on_success = on_success
        self.on_idle = on_idle if on_idle is not None else on_success
        self.on_error = on_error if on_error is not None else on_success
        self.on_timeout = on_timeout if on_timeout is not None else self.on_error
        for name in OUTCOMES:
            delay = self.delay(name)
            if not isinstance(delay, timedelta) or delay < timedelta(0):
                raise InvalidJobOptions(f"on_{name} must be a timedelta of zero or more")
            check_duration(f"on_{name}", delay, strict=False)

    def delay(self, outcome: Outcome) -> timedelta:
        delays: dict[str, timedelta] = {"success": self.on_success, "idle": self.on_idle, "error": self.on_error,
                                        "timeout": self.on_timeout}
        return delays[outcome]

    def next_after_outcome(self, finished_at: datetime, outcome: Outcome) -> datetime | None:
        """The next run after a run that ended so at ``finished_at``; None past the end of the time range."""
        return _later(utc(finished_at), self.delay(outcome))

    def next_after(self, dt: datetime) -> datetime | None:
        return _later(utc(dt), max(self.on_success, MICROSECOND))

    def describe(self) -> str:
        parts = [f"{_words(self.delay(o))} after {o}" for o in OUTCOMES]
        return "adaptive: next run " + ", ".join(parts)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, **{f"on_{o}": self.delay(o).total_seconds() for o in OUTCOMES}}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Adaptive:
        delays = [timedelta(seconds=float(spec[f"on_{o}"])) for o in OUTCOMES]
        return cls(*delays)


def _later(moment: datetime, delay: timedelta) -> datetime | None:
    try:
        return in_range(moment + delay)
    except OverflowError:
        return None


_TYPES: dict[str, Any] = {cls.type: cls for cls in (Once, Every, DailyAt, Cron, RRule, Adaptive)}


def rule_from_spec(spec: Mapping[str, Any]) -> Rule:
    """Rebuild a rule from ``rule.to_spec()``; InvalidJobOptions (a ValueError) for a spec it cannot read."""
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind not in _TYPES:
        raise InvalidJobOptions(f"unknown schedule rule type {kind!r} (known: {', '.join(sorted(_TYPES))})"[:300])
    try:
        rule: Rule = _TYPES[kind].from_spec(spec)
    except InvalidJobOptions:
        raise
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidJobOptions(f"unreadable {kind} rule: {type(exc).__name__}: {exc}"[:500]) from None
    return rule
