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
Fires are aware datetimes in UTC. Calendar rules follow the DST rule in finejobs._wallclock.
Rules are stored as JSON specs (``rule.to_spec()`` / ``rule_from_spec(spec)``), never pickled.
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
    from_iso,
    iso,
    local,
    parse_time,
    resolve,
    tz_name,
    utc,
    zone,
)

__all__ = ["Adaptive", "Cron", "DailyAt", "Every", "Once", "Outcome", "RRule", "Rule", "rule_from_spec"]

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

    def __init__(self, at: datetime) -> None:
        when = aware("at", at)
        assert when is not None
        self.at = when
        self.tz = getattr(at.tzinfo, "key", "UTC")

    def next_after(self, dt: datetime) -> datetime | None:
        return self.at if self.at > utc(dt) else None

    @property
    def bounded(self) -> bool:
        return True

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

    def __init__(self, interval: timedelta | None = None, *, seconds: float = 0, minutes: float = 0,
                 hours: float = 0, days: int = 0, weeks: int = 0, months: int = 0, years: int = 0,
                 start: datetime | None = None, count: int | None = None, until: datetime | None = None,
                 tz: str | ZoneInfo | None = None) -> None:
        if interval is not None and not isinstance(interval, timedelta):
            raise TypeError(f"interval must be a timedelta, got {type(interval).__name__}")
        step = (interval or timedelta(0)) + timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days,
                                                      weeks=weeks)
        self.months = int(years) * 12 + int(months)
        if step < timedelta(0) or self.months < 0:
            raise ValueError("an interval must be positive")
        if self.months and step:
            raise ValueError("give either months/years or a time interval, not both")
        if not self.months and step <= timedelta(0):
            raise ValueError("an interval must be positive")
        self.step = step
        start_utc = aware("start", start)
        self.tz = tz_name(tz if tz is not None else getattr(getattr(start, "tzinfo", None), "key", None))
        self.zone = zone(self.tz)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer, got {count!r}")
        if count is not None and start_utc is None:
            raise ValueError("count needs a start: the first of the runs it counts")
        self.explicit_start = start_utc is not None
        self.start = start_utc or datetime(1970, 1, 1, tzinfo=self.zone).astimezone(UTC)
        self.count = count
        self.until = aware("until", until)
        if self.until is not None and self.until < self.start:
            raise ValueError("until is before start")
        self.mode = "months" if self.months else ("days" if step % _DAY == timedelta(0) else "elapsed")
        self._wall_start = local(self.start, self.zone)

    @property
    def bounded(self) -> bool:
        return self.count is not None or self.until is not None

    def fire(self, n: int) -> datetime:
        """The n-th fire (from 0), ignoring count and until."""
        if self.mode == "elapsed":
            return self.start + n * self.step
        if self.mode == "days":
            wall = self._wall_start + n * self.step
        else:
            wall = self._wall_start + relativedelta(months=n * self.months)
        return resolve(wall, self.zone, False)[0]

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

    def next_after(self, dt: datetime) -> datetime | None:
        t = utc(dt)
        n = self._estimate(t)
        while self.fire(n) <= t:
            n += 1
        if self.count is not None and n >= self.count:
            return None
        found = self.fire(n)
        if self.until is not None and found > self.until:
            return None
        return found

    def remaining(self, after: datetime, cap: int = 10_000) -> int | None:
        if self.count is not None:
            t = utc(after)
            n = self._estimate(t)
            while self.fire(n) <= t:
                n += 1
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
            raise ValueError("DailyAt needs at least one time of day, e.g. DailyAt('06:00')")
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
            raise ValueError("a cron expression must be a non-empty string")
        self.expr = " ".join(expr.split())
        fields = self.expr.upper().split()
        if len(fields) not in (5, 6):
            raise ValueError(f"cron expression {expr!r} has {len(fields)} fields: expected 5, or 6 with seconds")
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
                raise ValueError(f"cron expression {expr!r}: {dom} cannot be combined with a day of week")
            if self._special[0] == "W" and not 1 <= self._special[1] <= 31:
                raise ValueError(f"cron expression {expr!r}: bad day-of-month {dom}")
            dom = "1"
        fields[offset + 2], fields[offset + 4] = dom, dow
        self._fields = fields
        self._cronsim_expr = " ".join(fields)
        try:
            self._months = CronSim(self._cronsim_expr, datetime(2000, 1, 1)).months
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None
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

    def __init__(self, on_success: timedelta, on_idle: timedelta | None = None, on_error: timedelta | None = None,
                 on_timeout: timedelta | None = None) -> None:
        self.on_success = on_success
        self.on_idle = on_idle if on_idle is not None else on_success
        self.on_error = on_error if on_error is not None else on_success
        self.on_timeout = on_timeout if on_timeout is not None else self.on_error
        for name in OUTCOMES:
            delay = self.delay(name)
            if not isinstance(delay, timedelta) or delay < timedelta(0):
                raise ValueError(f"on_{name} must be a timedelta of zero or more")

    def delay(self, outcome: Outcome) -> timedelta:
        delays: dict[str, timedelta] = {"success": self.on_success, "idle": self.on_idle, "error": self.on_error,
                                        "timeout": self.on_timeout}
        return delays[outcome]

    def next_after_outcome(self, finished_at: datetime, outcome: Outcome) -> datetime:
        return utc(finished_at) + self.delay(outcome)

    def next_after(self, dt: datetime) -> datetime | None:
        return utc(dt) + max(self.on_success, MICROSECOND)

    def describe(self) -> str:
        parts = [f"{_words(self.delay(o))} after {o}" for o in OUTCOMES]
        return "adaptive: next run " + ", ".join(parts)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, **{f"on_{o}": self.delay(o).total_seconds() for o in OUTCOMES}}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Adaptive:
        delays = [timedelta(seconds=float(spec[f"on_{o}"])) for o in OUTCOMES]
        return cls(*delays)


_TYPES: dict[str, Any] = {cls.type: cls for cls in (Once, Every, DailyAt, Cron, RRule, Adaptive)}


def rule_from_spec(spec: Mapping[str, Any]) -> Rule:
    """Rebuild a rule from ``rule.to_spec()``; ValueError for a spec it cannot read."""
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind not in _TYPES:
        raise ValueError(f"unknown schedule rule type {kind!r} (known: {', '.join(sorted(_TYPES))})")
    rule: Rule = _TYPES[kind].from_spec(spec)
    return rule


def first_fire(rule: Rule, *, now: datetime, start: datetime | None = None,
               end: datetime | None = None) -> datetime | None:
    """The first fire at or after ``now`` (and at or after ``start``, at or before ``end``)."""
    if isinstance(rule, Adaptive):
        first = max(utc(now), start or utc(now))
        return None if end is not None and first > end else first
    return next_fire(rule, utc(now) - MICROSECOND, start=start, end=end)


def next_fire(rule: Rule, after: datetime, *, start: datetime | None = None,
              end: datetime | None = None) -> datetime | None:
    """The first fire strictly after ``after`` within [start, end]."""
    t = utc(after)
    if start is not None and t < start:
        t = start - MICROSECOND
    found = rule.next_after(t)
    if found is None or (end is not None and found > end):
        return None
    return found
