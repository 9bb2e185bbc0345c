"""The base of every schedule rule, the one DST rule that all wall-clock rules share, and the scheduler's
view of a rule's ticks (first_fire, next_fire, runs_left, check_can_fire).

Wall-clock rules (cron, RRULE, daily-at, calendar intervals) produce *local* times in an IANA timezone.
Turning a local time into an instant follows one documented rule (docs/schedules.md, "DST"):

- a local time that does not exist (the clocks jumped over it) fires once, at the instant of the jump
  (02:30 on the spring-forward night in Madrid fires at 03:00 CEST); several such times are one fire;
- a local time that happens twice (the clocks went back) fires once, at its first occurrence, unless the
  rule repeats every hour or more often (cron with ``*`` or ``*/n`` hours, RRULE FREQ=HOURLY, MINUTELY,
  SECONDLY): those fire at both occurrences, because that hour really passes twice.

Every instant a rule returns is an aware datetime in **UTC**: Python compares and subtracts datetimes
that share a tzinfo by their wall-clock fields, which goes wrong inside the repeated hour. Every instant is
also within finejobs.limits' time range (MIN_TIME .. MAX_TIME): a rule whose next fire would leave it has
no next fire (it is exhausted), and never raises OverflowError or ValueError for it.

Rules refuse bad arguments with InvalidJobOptions (a ValueError and a FinejobsError) naming the argument.
"""

from __future__ import annotations

import abc
import bisect
import functools
import heapq
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar, ParamSpec
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from finejobs.errors import InvalidJobOptions
from finejobs.limits import MAX_RRULE_COUNT, MAX_TIME, MIN_TIME, check_time

MICROSECOND = timedelta(microseconds=1)
_NEAR = timedelta(hours=6)
# RRULE COUNT is exact up to this many fires and refused above it (docs/schedules.md, "Limits"): a rule
# object lists its counted fires from its start to answer next_after. A schedule counts its runs in its
# row instead (finejobs_schedules.fired), so COUNT never makes the scheduler walk from the start.
MAX_COUNT = MAX_RRULE_COUNT
P = ParamSpec("P")
# Past either end of the time range (what an instant that cannot even be converted to UTC stands for).
_BEFORE_ALL = datetime.min.replace(tzinfo=UTC)
_AFTER_ALL = datetime.max.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; InvalidJobOptions naming it if it does not exist."""
    if not isinstance(name, str) or not name:
        raise InvalidJobOptions(f"tz: a timezone must be an IANA name such as 'Europe/Madrid', got {name!r}"[:300])
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidJobOptions(f"tz: unknown timezone {name!r}: use an IANA name such as 'Europe/Madrid'"[:300]
                                ) from None


def tz_name(tz: str | ZoneInfo | None, default: str = "UTC") -> str:
    if tz is None:
        return default
    if isinstance(tz, ZoneInfo):
        return tz.key
    zone(tz)
    return tz


def aware(name: str, value: datetime | None) -> datetime | None:
    """``value`` in UTC; InvalidJobOptions naming ``name`` if it is naive or outside the time range."""
    if value is None:
        return None
    checked = check_time(name, value)
    assert checked is not None
    return checked.astimezone(UTC)


def utc(dt: datetime) -> datetime:
    """An instant to search from, in UTC. It may lie outside the time range (then no fire is after it, or
    the first fire is the rule's first), but it must be an aware datetime."""
    if not isinstance(dt, datetime):
        raise InvalidJobOptions(f"dt must be a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidJobOptions(f"dt is a naive datetime ({dt.isoformat()}): pass a timezone-aware one")
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # a day from Python's ends, in a far timezone
        return _AFTER_ALL if dt.year > 5000 else _BEFORE_ALL


def in_range(instant: datetime | None) -> datetime | None:
    """``instant`` if it is within the time range, else None (past the end: the rule has no such fire)."""
    if instant is None or not MIN_TIME <= instant <= MAX_TIME:
        return None
    return instant


def parse_time(value: str | time) -> time:
    """``HH:MM`` or ``HH:MM:SS`` (or a ``time``) as a naive time."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise InvalidJobOptions("give the time of day without a timezone; pass tz= to the rule")
        return value.replace(microsecond=0)
    parts = str(value).strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isascii() and p.isdigit() and len(p) == 2 for p in parts):
        raise InvalidJobOptions(f"not a time of day: {value!r} (expected HH:MM or HH:MM:SS)"[:300])
    try:
        numbers = [int(p) for p in parts]
        return time(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 0)
    except ValueError:
        raise InvalidJobOptions(f"not a time of day: {value!r}"[:300]) from None


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


def named_refusals(rule: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """Prefix the refusals of a rule's constructor with the rule's name (``Every: interval ...``)."""
    def decorate(init: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(init)
        def checked(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                init(*args, **kwargs)
            except InvalidJobOptions as exc:
                message = str(exc)
                raise InvalidJobOptions(message if message.startswith(rule) else f"{rule}: {message}") from None

        return checked

    return decorate


def positive_count(count: Any, *, high: int | None = None) -> int:
    """A COUNT: a positive integer (at most ``high``); InvalidJobOptions naming ``count`` otherwise."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidJobOptions(f"count must be a positive integer, got {count!r}"[:300])
    if high is not None and count > high:
        raise InvalidJobOptions(f"count ({count}) is over the limit of {high:,} runs: make the rule end with "
                                "an until (UNTIL) instead, or let the schedule's end bound it")
    return count


class Rule(abc.ABC):
    """A recurrence rule: ``next_after(dt)`` is the first fire strictly after ``dt`` (UTC), or None."""

    type: ClassVar[str] = ""
    after_runs: ClassVar[bool] = False  # the next fire comes from how the last run ended (Adaptive)
    tz: str = "UTC"
    count: int | None = None  # how many fires in all (a COUNT); None when the rule does not count them

    @abc.abstractmethod
    def next_after(self, dt: datetime) -> datetime | None:
        """The first fire strictly after ``dt`` (an aware datetime in UTC), or None when exhausted."""

    def next_occurrence(self, dt: datetime) -> datetime | None:
        """Like ``next_after``, but ignoring ``count``: the scheduler counts a schedule's runs itself (a
        count on the rule object would count the fires from its start, also those nobody ran)."""
        return self.next_after(dt)

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

    @property
    def earliest(self) -> datetime | None:
        """No fire comes before this moment (the rule's start), or None when the rule has no start."""
        return None

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


def _calendar_ends(candidates: Iterator[datetime]) -> Iterator[datetime]:
    """``candidates`` until the calendar runs out (year 9999): OverflowError and ValueError end it."""
    try:
        yield from candidates
    except (OverflowError, ValueError):
        return


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
            positive_count(count, high=MAX_COUNT)
            if self.start is None:
                raise InvalidJobOptions("count needs a start: the first of the runs it counts")
        self.count = count
        if self.start is not None and self.until is not None and self.until < self.start:
            raise InvalidJobOptions(f"until ({self.until.isoformat()}) is before start ({self.start.isoformat()}): "
                                    "the rule could never fire")
        self._counted: list[datetime] = []
        self._counted_done = False
        self._walk: Iterator[datetime] | None = None
        self._lock = threading.Lock()

    @property
    def bounded(self) -> bool:
        return self.count is not None or self.until is not None

    @property
    def earliest(self) -> datetime | None:
        return self.start

    @abc.abstractmethod
    def candidates(self, after: datetime) -> Iterator[datetime]:
        """Naive local times strictly after the naive local time ``after``, ascending. It may stop with
        OverflowError or ValueError at the end of the calendar."""

    def _first_after(self, t: datetime) -> datetime | None:
        """The first instant after ``t`` that a candidate resolves to (start, until, count aside), within
        the time range."""
        if t >= MAX_TIME:
            return None
        t = max(t, MIN_TIME - MICROSECOND)
        wall = local(t, self.zone)
        margin = shift_near(t, self.zone) if self.both else timedelta(0)
        best: datetime | None = None
        limit: datetime | None = None
        for candidate in _calendar_ends(self.candidates(wall - margin)):
            if limit is not None and candidate > limit:
                break
            try:
                instants = resolve(candidate, self.zone, self.both)
            except (OverflowError, ValueError):  # the calendar ends within this local time's day
                break
            for instant in instants:
                if instant > t and (best is None or instant < best):
                    best = instant
            if best is not None and limit is None:
                if not self.both:
                    break
                limit = candidate + shift_near(best, self.zone)
        return in_range(best)

    def next_after(self, dt: datetime) -> datetime | None:
        t = utc(dt)
        if self.count is not None:
            return self._next_counted(t)
        return self.next_occurrence(t)

    def next_occurrence(self, dt: datetime) -> datetime | None:
        t = utc(dt)
        if self.start is not None and t < self.start:
            t = self.start - MICROSECOND
        found = self._first_after(t)
        if found is None or (self.until is not None and found > self.until):
            return None
        return found

    def _next_counted(self, t: datetime) -> datetime | None:
        """COUNT counts fires (instants), so the fires are listed from the start, once per rule object
        (COUNT is at most MAX_COUNT, so the list is exact)."""
        assert self.count is not None and self.start is not None
        with self._lock:
            fires = self._counted
            if self._walk is None:
                self._walk = self._stream(self.start - MICROSECOND)
            while not self._counted_done and (not fires or fires[-1] <= t):
                found = next(self._walk, None) if len(fires) < self.count else None
                if found is None or (self.until is not None and found > self.until):
                    self._counted_done = True
                    break
                fires.append(found)
            index = bisect.bisect_right(fires, t)
            return fires[index] if index < len(fires) else None

    def _stream(self, after: datetime) -> Iterator[datetime]:
        """Every fire strictly after ``after``, ascending, within the time range (start, until and count
        aside): what chaining ``_first_after`` gives, in one pass over the candidates. A later local time
        never resolves before the first instant of an earlier one, so an instant can be let out as soon as
        a candidate's first instant reaches it; only the second pass of a repeated hour waits in the heap."""
        t = max(after, MIN_TIME - MICROSECOND)
        if t >= MAX_TIME:
            return
        margin = shift_near(t, self.zone) if self.both else timedelta(0)
        waiting: list[datetime] = []
        last: datetime | None = None

        def bounds() -> Iterator[datetime | None]:
            """Push each candidate's instants; yield how far the heap may be let out (None: all of it)."""
            for candidate in _calendar_ends(self.candidates(local(t, self.zone) - margin)):
                try:
                    instants = resolve(candidate, self.zone, self.both)
                except (OverflowError, ValueError):
                    break
                for instant in instants:
                    if instant > t:
                        heapq.heappush(waiting, instant)
                yield instants[0]
            yield None

        for bound in bounds():
            while waiting and (bound is None or waiting[0] <= bound):
                found = heapq.heappop(waiting)
                if found > MAX_TIME:
                    return
                if found != last:
                    last = found
                    yield found

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


# ---------------------------------------------------------------- ticks, as the scheduler sees them
# The scheduler counts a schedule's runs itself (finejobs_schedules.fired) and stops at the rule's count, so
# the ticks below ignore count: a tick that did not run (skipped, or passed while the schedule was paused)
# does not use up one of the count's runs. finejobs.schedules re-exports these.


def first_fire(rule: Rule, *, now: datetime, start: datetime | None = None,
               end: datetime | None = None) -> datetime | None:
    """The first tick at or after ``now`` (and at or after ``start``, at or before ``end``), count aside."""
    if rule.after_runs:
        first = max(utc(now), start or utc(now))
        return None if end is not None and first > end else first
    return next_fire(rule, utc(now) - MICROSECOND, start=start, end=end)


def next_fire(rule: Rule, after: datetime, *, start: datetime | None = None,
              end: datetime | None = None) -> datetime | None:
    """The first tick strictly after ``after`` within [start, end], count aside."""
    t = utc(after)
    if start is not None and t < start:
        t = start - MICROSECOND
    found = rule.next_occurrence(t)
    if found is None or (end is not None and found > end):
        return None
    return found


def runs_left(rule: Rule, fired: int) -> int | None:
    """How many runs the rule's count leaves after ``fired`` of them; None when the rule has no count."""
    return None if rule.count is None else max(0, rule.count - fired)


def check_can_fire(rule: Rule, *, start: datetime | None = None, end: datetime | None = None) -> None:
    """InvalidJobOptions unless the rule has a tick within [start, end] (ever, not only from now): a
    schedule that could never run is refused, one whose ticks are all past is merely finished."""
    if rule.after_runs:
        return
    earliest = [t for t in (rule.earliest, start) if t is not None]
    begin = max(earliest) if earliest else MIN_TIME
    if next_fire(rule, begin - MICROSECOND, start=start, end=end) is None:
        window = f" between start {start.isoformat()} and end {end.isoformat()}" if start and end else (
            f" before end {end.isoformat()}" if end else f" after start {start.isoformat()}" if start else "")
        raise InvalidJobOptions(f"rule: {rule.describe()} never fires{window}"[:500])
