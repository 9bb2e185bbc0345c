"""Properties of the schedule rules (hypothesis): fires strictly increase, every fire matches its rule
(checked by a small independent matcher, not by the code under test), and DST changes in several zones
neither skip nor double a daily fire."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from finejobs import Cron, DailyAt, Every, RRule, Rule

ZONES = ["Europe/Madrid", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
DST_ZONES = ["Europe/Madrid", "America/New_York", "Australia/Sydney"]
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The 2026 DST changes of the three zones, as UTC instants (from the tz database's published dates).
CHANGES = [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),  # Madrid
           datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),  # New York
           datetime(2026, 4, 4, 16, tzinfo=UTC), datetime(2026, 10, 3, 16, tzinfo=UTC)]  # Sydney
anywhere = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
near_change = st.builds(lambda change, minutes: change + timedelta(minutes=minutes), st.sampled_from(CHANGES),
                        st.integers(-300, 300))
moments = st.one_of(anywhere, near_change)
zones = st.sampled_from(ZONES)


@st.composite
def cron_fields(draw: st.DrawFn) -> tuple[str, set[int], set[int], set[int] | str, set[int]]:
    """A cron expression with the sets of values each field allows (the oracle)."""
    def numeric(lo: int, hi: int, allow_star: bool = True) -> tuple[str, set[int]]:
        choice = draw(st.sampled_from(["star", "step", "one", "list"] if allow_star else ["one", "list"]))
        if choice == "star":
            return "*", set(range(lo, hi + 1))
        if choice == "step":
            step = draw(st.integers(2, 20))
            return f"*/{step}", set(range(lo, hi + 1, step))
        if choice == "one":
            value = draw(st.integers(lo, hi))
            return str(value), {value}
        values = sorted(draw(st.sets(st.integers(lo, hi), min_size=2, max_size=4)))
        return ",".join(map(str, values)), set(values)

    minute, minutes = numeric(0, 59)
    hour, hours = numeric(0, 23) if draw(st.booleans()) else numeric(1, 3, allow_star=False)  # DST hours
    dom_kind = draw(st.sampled_from(["star", "day", "L"]))
    if dom_kind == "star":
        dom, days = "*", set(range(1, 32))
        dow, weekdays = numeric(0, 6)
    elif dom_kind == "L":
        dom, days, dow, weekdays = "L", set(), "*", set(range(7))
    else:
        day = draw(st.integers(1, 28))
        dom, days, dow, weekdays = str(day), {day}, "*", set(range(7))
    expr = f"{minute} {hour} {dom} * {dow}"
    return expr, minutes, hours, ("L" if dom == "L" else days), weekdays


def cron_matches(local: datetime, minutes: set[int], hours: set[int], days: set[int] | str,
                 weekdays: set[int]) -> bool:
    if local.second or local.minute not in minutes or local.hour not in hours:
        return False
    if days == "L":
        return (local + timedelta(days=1)).day == 1
    return local.day in days and (local.isoweekday() % 7) in weekdays


def is_jump(instant: datetime, zone: ZoneInfo) -> bool:
    return instant.astimezone(zone).utcoffset() != (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()


def skipped_wall_times(instant: datetime, zone: ZoneInfo) -> list[datetime]:
    """The local wall times (by minute) that the jump at ``instant`` skipped."""
    after = instant.astimezone(zone).replace(tzinfo=None)
    before = (instant - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) + timedelta(seconds=1)
    times, wall = [], before
    while wall < after:
        times.append(wall)
        wall += timedelta(minutes=1)
    return times


def walk(rule: Rule, after: datetime, n: int) -> list[datetime]:
    return rule.fires(after, n)


@PROPS
@given(cron_fields(), zones, moments)
def test_cron_fires_increase_and_match(fields: tuple[str, set[int], set[int], set[int] | str, set[int]],
                                       tz: str, after: datetime) -> None:
    expr, minutes, hours, days, weekdays = fields
    rule = Cron(expr, tz=tz)
    zone = ZoneInfo(tz)
    previous = after
    for fire in walk(rule, after, 8):
        assert fire > previous
        assert fire.tzinfo is UTC
        local = fire.astimezone(zone).replace(tzinfo=None)
        if not cron_matches(local, minutes, hours, days, weekdays):
            # the documented DST rule: a skipped local time fires at the jump
            assert is_jump(fire, zone), (expr, tz, fire.astimezone(zone))
            assert any(cron_matches(w, minutes, hours, days, weekdays) for w in skipped_wall_times(fire, zone))
        previous = fire


@PROPS
@given(st.sampled_from(DST_ZONES), st.one_of(st.times(), st.times(min_value=time(1), max_value=time(3))),
       st.integers(2025, 2027))
def test_daily_at_fires_exactly_once_every_local_day_across_dst(tz: str, at: time, year: int) -> None:
    """Across both DST changes of a year: one fire per local calendar day, never two, never none."""
    zone = ZoneInfo(tz)
    at = at.replace(microsecond=0)
    rule = DailyAt(at, tz=tz)
    for month in (3, 4, 10, 11):  # the change months of the three zones
        begin = datetime(year, month, 1, tzinfo=zone)
        days = (datetime(year + (month == 12), month % 12 + 1, 1) - datetime(year, month, 1)).days
        got = walk(rule, begin - timedelta(seconds=1), days + 2)
        local_days = [f.astimezone(zone).date() for f in got]
        assert local_days[:days] == [begin.date() + timedelta(days=i) for i in range(days)]
        for fire in got:
            local = fire.astimezone(zone)
            assert local.time() == at or is_jump(fire, zone)


@PROPS
@given(st.sampled_from(DST_ZONES), moments)
def test_hourly_cron_is_exactly_one_hour_apart_through_dst(tz: str, after: datetime) -> None:
    got = walk(Cron("0 * * * *", tz=tz), after, 30)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(got))


@PROPS
@given(st.integers(1, 100_000), moments, st.integers(1, 40))
def test_every_elapsed_count_is_exact(seconds: int, start: datetime, count: int) -> None:
    rule = Every(seconds=seconds, start=start, count=count)
    got = walk(rule, start - timedelta(microseconds=1), count + 5)
    assert len(got) == count
    assert got[0] == start
    assert all(b - a == timedelta(seconds=seconds) for a, b in itertools.pairwise(got))


@PROPS
@given(st.sampled_from(DST_ZONES), st.integers(1, 3), st.integers(0, 23), moments, st.integers(1, 20))
def test_every_days_keeps_the_local_time(tz: str, days: int, hour: int, start: datetime, count: int) -> None:
    zone = ZoneInfo(tz)
    local_start = start.astimezone(zone).replace(hour=hour, minute=0, second=0, microsecond=0, fold=0)
    assume(local_start.astimezone(UTC).astimezone(zone).hour == hour)  # not a time the clocks skip
    rule = Every(days=days, start=local_start, count=count)
    got = walk(rule, local_start - timedelta(days=1), count + 2)
    assert len(got) == count
    for fire in got:
        local = fire.astimezone(zone)
        assert local.hour == hour or is_jump(fire, zone)


@PROPS
@given(st.sampled_from(DST_ZONES), moments, st.integers(1, 15),
       st.sampled_from(["FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0",
                        "FREQ=HOURLY;INTERVAL=3", "FREQ=MINUTELY;INTERVAL=45", "FREQ=MONTHLY;BYDAY=-1SU"]))
def test_rrule_count_is_exact_and_increasing(tz: str, start: datetime, count: int, text: str) -> None:
    rule = RRule(f"{text};COUNT={count}", tz=tz, start=start)
    got = walk(rule, start - timedelta(days=1), count + 3)
    assert len(got) == count
    assert all(a < b for a, b in itertools.pairwise(got))
    assert got[0] >= start.replace(microsecond=0)


@PROPS
@given(st.sampled_from(DST_ZONES), moments, st.integers(1, 400))
def test_until_is_inclusive_and_never_passed(tz: str, start: datetime, hours: int) -> None:
    until = start + timedelta(hours=hours)
    rule = Every(hours=1, start=start, until=until)
    got = walk(rule, start - timedelta(seconds=1), hours + 5)
    assert len(got) == hours + 1  # start, start+1h, ... start+hours (== until, included)
    assert got[-1] == until


@PROPS
@given(cron_fields(), zones, moments)
def test_next_after_is_the_first_fire_after(fields: tuple[str, set[int], set[int], set[int] | str, set[int]],
                                            tz: str, after: datetime) -> None:
    """next_after from any point between two fires gives the later one (no fire is jumped over)."""
    rule = Cron(fields[0], tz=tz)
    got = walk(rule, after, 3)
    if len(got) >= 2:
        middle = got[0] + (got[1] - got[0]) / 2
        assert rule.next_after(middle) == got[1] or middle == got[0]
        assert rule.next_after(got[0] - timedelta(microseconds=1)) == got[0]
