"""The base of every schedule rule, and the one DST rule that all wall-clock rules share.

Wall-clock rules (cron, RRULE, daily-at, calendar intervals) produce *local* times in an IANA timezone.
Turning a local time into an instant follows one documented rule (docs/schedules.md, "DST"):

- a local time that does not exist (the clocks jumped over it) fires once, at the instant of the jump
  (02:30 on the spring-forward night in Madrid fires at 03:00 CEST); several such times are one fire;
- a local time that happens twice (the clocks went back) fires once, at its first occurrence, unless the
  rule repeats every hour or more often (cron with ``*`` or ``*/n`` hours, RRULE FREQ=HOURLY, MINUTELY,
  SECONDLY): those fire at both occurrences, because that hour really passes twice.

Every instant a rule returns is an aware datetime in **UTC**: Python compares and subtracts datetimes
that share a tzinfo by their wall-clock fields, which goes wrong inside the repeated hour.
"""

from __future__ import annotations

import abc
import bisect
import functools
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MICROSECOND = timedelta(microseconds=1)
_NEAR = timedelta(hours=6)
_MAX_COUNT_CACHE = 100_000


@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; ValueError naming it if it does not exist."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a timezone must be an IANA name such as 'Europe/Madrid', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}: use an IANA name such as 'Europe/Madrid'") from None


def tz_name(tz: str | ZoneInfo | None, default: str = "UTC") -> str:
    if tz is None:
        return default
    if isinstance(tz, ZoneInfo):
        return tz.key
    zone(tz)
    return tz


def aware(name: str, value: datetime | None) -> datetime | None:
    """``value`` in UTC; ValueError if it is naive."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime ({value.isoformat()}): pass a timezone-aware one")
    return value.astimezone(UTC)


def utc(dt: datetime) -> datetime:
    result = aware("dt", dt)
    assert result is not None
    return result


def parse_time(value: str | time) -> time:
    """``HH:MM`` or ``HH:MM:SS`` (or a ``time``) as a naive time."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError("give the time of day without a timezone; pass tz= to the rule")
        return value.replace(microsecond=0)
    parts = str(value).strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"not a time of day: {value!r} (expected HH:MM or HH:MM:SS)")
    try:
        numbers = [int(p) for p in parts]
        return time(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 0)
    except ValueError:
        raise ValueError(f"not a time of day: {value!r}") from None


def local(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock time of ``instant`` in ``tz``."""
    return instant.astimezone(tz).replace(tzinfo=None)


def _offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def _jump_instant(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in (before, after] whose UTC offset is the one in force at ``after``."""
    target = _offset(after, tz)
    lo, hi = before, after
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            break
        if _offset(mid, tz) == target:
            hi = mid
        else:
            lo = mid
    return hi


@functools.lru_cache(maxsize=4096)
def resolve(naive: datetime, tz: ZoneInfo, both: bool) -> tuple[datetime, ...]:
    """The instants (UTC) at which the local time ``naive`` fires, by the module's DST rule."""
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    late = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if early == late:
        return (early,)
    if early < late:  # the local time happens twice
        return (early, late) if both else (early,)
    # the local time does not exist: fold=1 used the offset after the jump, fold=0 the one before
    return (_jump_instant(late, early, tz),)


def shift_near(instant: datetime, tz: ZoneInfo) -> timedelta:
    """How far the UTC offset changes within six hours of ``instant`` (zero when it does not)."""
    a, b = _offset(instant - _NEAR, tz), _offset(instant + _NEAR, tz)
    mid = _offset(instant, tz)
    return max(abs(a - mid), abs(b - mid), abs(a - b))


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def from_iso(value: Any) -> datetime | None:
    if value is None:
        return None
    return aware("datetime", datetime.fromisoformat(str(value)))


class Rule(abc.ABC):
    """A recurrence rule: ``next_after(dt)`` is the first fire strictly after ``dt`` (UTC), or None."""

    type: ClassVar[str] = ""
    tz: str = "UTC"

    @abc.abstractmethod
    def next_after(self, dt: datetime) -> datetime | None:
        """The first fire strictly after ``dt`` (an aware datetime in UTC), or None when exhausted."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The rule in words."""

    @abc.abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """A JSON-ready dict that ``rule_from_spec`` turns back into an equal rule."""

    @property
    def bounded(self) -> bool:
        """True when the rule stops by itself (a COUNT or an UNTIL)."""
        return False

    def fires(self, after: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` fires strictly after ``after``, in order."""
        found: list[datetime] = []
        current: datetime | None = utc(after)
        while len(found) < limit:
            assert current is not None
            current = self.next_after(current)
            if current is None:
                break
            found.append(current)
        return found

    def remaining(self, after: datetime, cap: int = 10_000) -> int | None:
        """How many fires are left after ``after`` (at most ``cap``); None for a rule without end."""
        if not self.bounded:
            return None
        return len(self.fires(after, cap))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_spec().items())))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class WallClockRule(Rule):
    """A rule whose candidates are local times in ``tz``, bounded by start, until and count."""

    both: bool = False  # fire at both occurrences of a repeated local time

    def __init__(self, *, tz: str | ZoneInfo | None, start: datetime | None, until: datetime | None,
                 count: int | None) -> None:
        self.tz = tz_name(tz)
        self.zone = zone(self.tz)
        self.start = aware("start", start)
        self.until = aware("until", until)
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"count must be a positive integer, got {count!r}")
            if self.start is None:
                raise ValueError("count needs a start: the first of the runs it counts")
        self.count = count
        if self.start is not None and self.until is not None and self.until < self.start:
            raise ValueError("until is before start")
        self._counted: list[datetime] = []
        self._counted_done = False
        self._lock = threading.Lock()

    @property
    def bounded(self) -> bool:
        return self.count is not None or self.until is not None

    @abc.abstractmethod
    def candidates(self, after: datetime) -> Iterator[datetime]:
        """Naive local times strictly after the naive local time ``after``, ascending."""

    def _first_after(self, t: datetime) -> datetime | None:
        """The first instant after ``t`` that a candidate resolves to (start, until, count aside)."""
        wall = local(t, self.zone)
        margin = shift_near(t, self.zone) if self.both else timedelta(0)
        best: datetime | None = None
        limit: datetime | None = None
        for candidate in self.candidates(wall - margin):
            if limit is not None and candidate > limit:
                break
            for instant in resolve(candidate, self.zone, self.both):
                if instant > t and (best is None or instant < best):
                    best = instant
            if best is not None and limit is None:
                if not self.both:
                    break
                limit = candidate + shift_near(best, self.zone)
        return best

    def next_after(self, dt: datetime) -> datetime | None:
        t = utc(dt)
        if self.count is not None:
            return self._next_counted(t)
        if self.start is not None and t < self.start:
            t = self.start - MICROSECOND
        found = self._first_after(t)
        if found is None or (self.until is not None and found > self.until):
            return None
        return found

    def _next_counted(self, t: datetime) -> datetime | None:
        """COUNT counts fires (instants), so the fires are listed from the start, once per rule object."""
        assert self.count is not None and self.start is not None
        with self._lock:
            fires = self._counted
            while not self._counted_done and (not fires or fires[-1] <= t):
                if len(fires) >= min(self.count, _MAX_COUNT_CACHE):
                    self._counted_done = True
                    break
                previous = fires[-1] if fires else self.start - MICROSECOND
                found = self._first_after(previous)
                if found is None or (self.until is not None and found > self.until):
                    self._counted_done = True
                    break
                fires.append(found)
            index = bisect.bisect_right(fires, t)
            return fires[index] if index < len(fires) else None

    def _bounds_spec(self) -> dict[str, Any]:
        return {"tz": self.tz, "start": iso(self.start), "until": iso(self.until), "count": self.count}

    def _bounds_words(self) -> str:
        words = []
        if self.start is not None:
            words.append(f"from {self.start.astimezone(self.zone):%Y-%m-%d %H:%M}")
        if self.count is not None:
            words.append(f"{self.count} time{'s' if self.count != 1 else ''}")
        if self.until is not None:
            words.append(f"until {self.until.astimezone(self.zone):%Y-%m-%d %H:%M}")
        return (", " + ", ".join(words)) if words else ""


def bounds_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"tz": spec.get("tz") or "UTC", "start": from_iso(spec.get("start")),
            "until": from_iso(spec.get("until")), "count": spec.get("count")}
