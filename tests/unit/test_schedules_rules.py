"""Every schedule rule against fire times written out by hand from a calendar (never computed by the code
under test). Times are written as local wall-clock times with their UTC offset, e.g. "2026-03-30T06:00+02:00".

Calendar facts used below (2026): 1 January is a Thursday; Europe/Madrid springs forward on Sunday
29 March (02:00 -> 03:00) and falls back on Sunday 25 October (03:00 -> 02:00); America/New_York springs
forward on Sunday 8 March and falls back on Sunday 1 November (02:00 -> 01:00); Australia/Sydney falls
back on Sunday 5 April (03:00 -> 02:00) and springs forward on Sunday 4 October (02:00 -> 03:00).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from finejobs import Adaptive, Cron, DailyAt, Every, Once, RRule, Rule
from finejobs.schedules import rule_from_spec

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")


def t(text: str) -> datetime:
    """An aware datetime from ISO text with an offset."""
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, text
    return value


def fires(rule: Rule, after: str, n: int) -> list[datetime]:
    return rule.fires(t(after), n)


def check(rule: Rule, after: str, expected: list[str]) -> None:
    got = fires(rule, after, len(expected) + 1)
    want = [t(e) for e in expected]
    assert got[: len(want)] == want, [g.astimezone(ZoneInfo(rule.tz)).isoformat() for g in got]


# ---------------------------------------------------------------- once


def test_once_fires_once_then_never() -> None:
    rule = Once(datetime(2026, 12, 1, 9, tzinfo=MADRID))
    assert rule.next_after(t("2026-11-30T00:00+01:00")) == t("2026-12-01T09:00+01:00")
    assert rule.next_after(t("2026-12-01T09:00+01:00")) is None  # strictly after
    assert fires(rule, "2026-01-01T00:00Z", 5) == [t("2026-12-01T09:00+01:00")]


def test_fires_are_aware_utc() -> None:
    fire = Cron("0 6 * * MON", tz="Europe/Madrid").next_after(t("2026-11-22T00:00+01:00"))
    assert fire is not None and fire.tzinfo is UTC
    assert fire == t("2026-11-23T06:00+01:00")


# ---------------------------------------------------------------- every N units


@pytest.mark.parametrize(("rule", "after", "expected"), [
    (Every(seconds=5, start=t("2026-11-23T09:00:00+01:00")), "2026-11-23T09:00:00+01:00",
     ["2026-11-23T09:00:05+01:00", "2026-11-23T09:00:10+01:00", "2026-11-23T09:00:15+01:00"]),
    (Every(minutes=15), "2026-11-23T09:07+00:00",
     ["2026-11-23T09:15Z", "2026-11-23T09:30Z", "2026-11-23T09:45Z", "2026-11-23T10:00Z"]),
    (Every(hours=6, start=t("2026-11-23T01:00Z")), "2026-11-23T02:00Z",
     ["2026-11-23T07:00Z", "2026-11-23T13:00Z", "2026-11-23T19:00Z", "2026-11-24T01:00Z"]),
    (Every(days=3, start=t("2026-11-23T09:00+01:00")), "2026-11-23T09:00+01:00",
     ["2026-11-26T09:00+01:00", "2026-11-29T09:00+01:00", "2026-12-02T09:00+01:00"]),
    (Every(timedelta(weeks=2), start=datetime(2026, 11, 23, 9, tzinfo=MADRID)), "2026-11-01T00:00+01:00",
     ["2026-11-23T09:00+01:00", "2026-12-07T09:00+01:00", "2026-12-21T09:00+01:00", "2027-01-04T09:00+01:00"]),
    (Every(months=1, start=datetime(2026, 1, 31, 9, tzinfo=MADRID)), "2026-01-01T00:00+01:00",
     ["2026-01-31T09:00+01:00", "2026-02-28T09:00+01:00", "2026-03-31T09:00+02:00", "2026-04-30T09:00+02:00"]),
    (Every(months=3, start=datetime(2026, 1, 15, 8, tzinfo=MADRID)), "2026-02-01T00:00+01:00",
     ["2026-04-15T08:00+02:00", "2026-07-15T08:00+02:00", "2026-10-15T08:00+02:00", "2027-01-15T08:00+01:00"]),
    (Every(years=1, start=datetime(2028, 2, 29, 12, tzinfo=UTC)), "2028-01-01T00:00Z",
     ["2028-02-29T12:00Z", "2029-02-28T12:00Z", "2030-02-28T12:00Z", "2031-02-28T12:00Z", "2032-02-29T12:00Z"]),
], ids=["5s", "15min-aligned", "6h", "3days", "2weeks", "month-end", "quarterly", "yearly-leap-day"])
def test_every(rule: Every, after: str, expected: list[str]) -> None:
    check(rule, after, expected)


def test_every_day_keeps_local_time_across_dst() -> None:
    rule = Every(days=1, start=datetime(2026, 3, 27, 9, tzinfo=MADRID))
    check(rule, "2026-03-27T00:00+01:00", ["2026-03-27T09:00+01:00", "2026-03-28T09:00+01:00",
                                           "2026-03-29T09:00+02:00", "2026-03-30T09:00+02:00"])


def test_every_hour_is_elapsed_time_across_dst() -> None:
    rule = Every(hours=1, start=datetime(2026, 10, 25, 0, tzinfo=MADRID))
    check(rule, "2026-10-25T00:30+02:00", ["2026-10-25T01:00+02:00", "2026-10-25T02:00+02:00",
                                           "2026-10-25T02:00+01:00", "2026-10-25T03:00+01:00"])


def test_every_count_runs_exactly_count_times_not_one_more() -> None:
    """The classic bug: "every 5 seconds, 10 times" running an 11th time."""
    start = t("2026-11-23T09:00:00+01:00")
    rule = Every(seconds=5, start=start, count=10)
    got = rule.fires(start - timedelta(seconds=1), 50)
    assert len(got) == 10
    assert got[0] == start and got[-1] == t("2026-11-23T09:00:45+01:00")
    assert rule.next_after(t("2026-11-23T09:00:45+01:00")) is None


def test_every_until_includes_a_fire_exactly_at_until() -> None:
    """The classic bug: stopping before the end time (a fire exactly at UNTIL must happen)."""
    start = t("2026-11-23T09:00+01:00")
    rule = Every(hours=1, start=start, until=t("2026-11-23T12:00+01:00"))
    assert rule.fires(start - timedelta(seconds=1), 10) == [
        t("2026-11-23T09:00+01:00"), t("2026-11-23T10:00+01:00"), t("2026-11-23T11:00+01:00"),
        t("2026-11-23T12:00+01:00")]


def test_every_remaining_counts_what_is_left() -> None:
    start = t("2026-11-23T09:00:00Z")
    rule = Every(seconds=5, start=start, count=10)
    assert rule.remaining(start - timedelta(seconds=1)) == 10
    assert rule.remaining(t("2026-11-23T09:00:12Z")) == 7
    assert rule.remaining(t("2026-11-23T10:00:00Z")) == 0
    assert Every(minutes=1).remaining(start) is None


@pytest.mark.parametrize("make", [
    lambda: Every(), lambda: Every(seconds=-1), lambda: Every(months=1, hours=1),
    lambda: Every(minutes=1, count=3), lambda: Every(minutes=1, start=datetime(2026, 1, 1)),
    lambda: Every(minutes=1, count=0, start=t("2026-01-01T00:00Z")),
])
def test_every_refuses_bad_options(make: Callable[[], Every]) -> None:
    with pytest.raises(ValueError):
        make()


# ---------------------------------------------------------------- calendar rules


@pytest.mark.parametrize(("rule", "after", "expected"), [
    (RRule.weekdays(at="08:15", tz="Europe/Madrid"), "2026-11-19T12:00+01:00",  # Thu
     ["2026-11-20T08:15+01:00", "2026-11-23T08:15+01:00", "2026-11-24T08:15+01:00", "2026-11-25T08:15+01:00",
      "2026-11-26T08:15+01:00", "2026-11-27T08:15+01:00", "2026-11-30T08:15+01:00"]),
    (RRule.weekly("MO,WE,FR", at="07:00", tz="Europe/Madrid"), "2026-11-24T00:00+01:00",
     ["2026-11-25T07:00+01:00", "2026-11-27T07:00+01:00", "2026-11-30T07:00+01:00", "2026-12-02T07:00+01:00"]),
    (RRule.weekly("Monday", every=2, at="09:00", tz="Europe/Madrid", start=datetime(2026, 11, 23, tzinfo=MADRID)),
     "2026-11-01T00:00+01:00",
     ["2026-11-23T09:00+01:00", "2026-12-07T09:00+01:00", "2026-12-21T09:00+01:00", "2027-01-04T09:00+01:00"]),
    (RRule.monthly(day=1, at="06:00", tz="Europe/Madrid"), "2026-01-15T00:00+01:00",
     ["2026-02-01T06:00+01:00", "2026-03-01T06:00+01:00", "2026-04-01T06:00+02:00", "2026-05-01T06:00+02:00"]),
    (RRule.monthly(weekday="SU", nth=1, at="10:00", tz="Europe/Madrid"), "2026-01-01T00:00+01:00",
     ["2026-01-04T10:00+01:00", "2026-02-01T10:00+01:00", "2026-03-01T10:00+01:00", "2026-04-05T10:00+02:00"]),
    (RRule.monthly(weekday="WE", nth=2, at="10:00", tz="Europe/Madrid"), "2026-01-01T00:00+01:00",
     ["2026-01-14T10:00+01:00", "2026-02-11T10:00+01:00", "2026-03-11T10:00+01:00", "2026-04-08T10:00+02:00"]),
    (RRule.monthly(weekday="TU", nth=3, at="10:00", tz="Europe/Madrid"), "2026-01-01T00:00+01:00",
     ["2026-01-20T10:00+01:00", "2026-02-17T10:00+01:00", "2026-03-17T10:00+01:00", "2026-04-21T10:00+02:00"]),
    (RRule.monthly(weekday="MO", nth=-1, at="06:00", tz="Europe/Madrid"), "2026-01-01T00:00+01:00",
     ["2026-01-26T06:00+01:00", "2026-02-23T06:00+01:00", "2026-03-30T06:00+02:00", "2026-04-27T06:00+02:00"]),
    (RRule.yearly(month=3, weekday="SU", nth=1, at="10:00", tz="Europe/Madrid"), "2026-01-01T00:00+01:00",
     ["2026-03-01T10:00+01:00", "2027-03-07T10:00+01:00"]),
    (RRule.yearly(month=9, weekday="MO", nth=-1, at="10:00", tz="Europe/Madrid"), "2026-01-01T00:00+01:00",
     ["2026-09-28T10:00+02:00", "2027-09-27T10:00+02:00"]),
    (RRule.yearly(month=1, day=21, at="09:00", tz="Europe/Madrid"), "2026-01-01T00:00+01:00",
     ["2026-01-21T09:00+01:00", "2027-01-21T09:00+01:00", "2028-01-21T09:00+01:00"]),
], ids=["weekdays", "mon-wed-fri", "every-2-weeks-monday", "1st-of-month", "first-sunday", "second-wednesday",
        "third-tuesday", "last-monday", "first-sunday-of-march", "last-monday-of-september", "21-january"])
def test_calendar_helpers(rule: RRule, after: str, expected: list[str]) -> None:
    check(rule, after, expected)


def test_a_date_each_year_until_2030_stops_after_2030() -> None:
    rule = RRule.yearly(month=1, day=21, at="09:00", tz="Europe/Madrid", until=datetime(2030, 1, 21, 9, tzinfo=MADRID))
    assert fires(rule, "2026-01-01T00:00+01:00", 10) == [
        t("2026-01-21T09:00+01:00"), t("2027-01-21T09:00+01:00"), t("2028-01-21T09:00+01:00"),
        t("2029-01-21T09:00+01:00"), t("2030-01-21T09:00+01:00")]


# ---------------------------------------------------------------- RRULE strings


@pytest.mark.parametrize(("rule", "after", "expected"), [
    (RRule("FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6;BYMINUTE=0", tz="Europe/Madrid",
           start=datetime(2026, 1, 1, tzinfo=MADRID)), "2026-01-01T00:00+01:00",
     ["2026-01-26T06:00+01:00", "2026-02-23T06:00+01:00", "2026-03-30T06:00+02:00"]),
    (RRule("RRULE:FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=21;UNTIL=20300121", tz="Europe/Madrid",
           start=datetime(2026, 1, 1, 9, tzinfo=MADRID)), "2028-06-01T00:00+02:00",
     ["2029-01-21T09:00+01:00", "2030-01-21T09:00+01:00"]),
    (RRule("DTSTART;TZID=America/New_York:20261102T083000\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH;COUNT=4"),
     "2026-11-01T00:00-04:00",
     ["2026-11-03T08:30-05:00", "2026-11-05T08:30-05:00", "2026-11-10T08:30-05:00", "2026-11-12T08:30-05:00"]),
    (RRule("FREQ=MONTHLY;BYMONTH=6;BYDAY=2WE;BYHOUR=12;BYMINUTE=0;BYSECOND=0", tz="UTC"), "2026-01-01T00:00Z",
     ["2026-06-10T12:00Z", "2027-06-09T12:00Z"]),
    (RRule("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=17;BYMINUTE=0;BYSECOND=0", tz="UTC"),
     "2026-01-01T00:00Z", ["2026-01-30T17:00Z", "2026-02-27T17:00Z", "2026-03-31T17:00Z", "2026-04-30T17:00Z"]),
    (RRule("FREQ=MINUTELY;INTERVAL=20", tz="UTC", start=t("2020-01-01T00:05Z")), "2026-11-23T10:00Z",
     ["2026-11-23T10:05Z", "2026-11-23T10:25Z", "2026-11-23T10:45Z"]),
], ids=["last-monday", "until-date-inclusive", "dtstart-tzid-count", "2nd-wednesday-of-june",
        "last-workday-bysetpos", "minutely-from-old-start"])
def test_rrule_strings(rule: RRule, after: str, expected: list[str]) -> None:
    check(rule, after, expected)


def test_rrule_count_runs_exactly_count_times() -> None:
    rule = RRule("FREQ=DAILY;COUNT=3;BYHOUR=9;BYMINUTE=0;BYSECOND=0", tz="UTC", start=t("2026-11-23T00:00Z"))
    assert fires(rule, "2026-01-01T00:00Z", 10) == [t("2026-11-23T09:00Z"), t("2026-11-24T09:00Z"),
                                                   t("2026-11-25T09:00Z")]


def test_rrule_until_datetime_is_inclusive() -> None:
    rule = RRule("FREQ=DAILY;UNTIL=20261125T090000Z;BYHOUR=9;BYMINUTE=0;BYSECOND=0", tz="UTC",
                 start=t("2026-11-23T00:00Z"))
    assert fires(rule, "2026-01-01T00:00Z", 10)[-1] == t("2026-11-25T09:00Z")


@pytest.mark.parametrize("text", ["", "FREQ=FORTNIGHTLY", "BYDAY=MO", "FREQ=WEEKLY;INTERVAL=2",
                                  "FREQ=DAILY;COUNT=3", "FREQ=DAILY\nEXDATE:20260101", "FREQ=DAILY;BYDAY=XX"])
def test_rrule_refuses_what_it_cannot_do(text: str) -> None:
    with pytest.raises(ValueError):
        RRule(text)


# ---------------------------------------------------------------- cron


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("0 6 * * MON", "2026-11-18T00:00+03:00", ["2026-11-23T06:00+03:00", "2026-11-30T06:00+03:00"]),
    ("*/20 9-10 * * 1-5", "2026-11-20T09:30+03:00",  # Fri, then Mon
     ["2026-11-20T09:40+03:00", "2026-11-20T10:00+03:00", "2026-11-20T10:20+03:00", "2026-11-20T10:40+03:00",
      "2026-11-23T09:00+03:00"]),
    ("30 */15 * * * *", "2026-11-23T10:00:00+03:00",  # 6 fields: seconds first
     ["2026-11-23T10:00:30+03:00", "2026-11-23T10:15:30+03:00", "2026-11-23T10:30:30+03:00"]),
    ("0 12 L * ?", "2026-01-15T00:00+03:00",
     ["2026-01-31T12:00+03:00", "2026-02-28T12:00+03:00", "2026-03-31T12:00+03:00", "2026-04-30T12:00+03:00"]),
    ("0 9 LW * *", "2026-05-01T00:00+03:00",  # 31 May 2026 is a Sunday
     ["2026-05-29T09:00+03:00", "2026-06-30T09:00+03:00", "2026-07-31T09:00+03:00", "2026-08-31T09:00+03:00"]),
    ("0 9 15W * *", "2026-08-01T00:00+03:00",  # 15 Aug is a Saturday, 15 Nov a Sunday
     ["2026-08-14T09:00+03:00", "2026-09-15T09:00+03:00", "2026-10-15T09:00+03:00", "2026-11-16T09:00+03:00"]),
    ("0 9 1W * *", "2026-08-01T00:00+03:00",  # 1 Aug Saturday -> Monday 3rd; 1 Nov Sunday -> Monday 2nd
     ["2026-08-03T09:00+03:00", "2026-09-01T09:00+03:00", "2026-10-01T09:00+03:00", "2026-11-02T09:00+03:00"]),
    ("0 9 31W * *", "2026-05-01T00:00+03:00",  # 31 May Sunday -> Friday 29th; June has no 31st
     ["2026-05-29T09:00+03:00", "2026-07-31T09:00+03:00", "2026-08-31T09:00+03:00"]),
    ("0 9 L-2 * *", "2026-02-01T00:00+03:00", ["2026-02-26T09:00+03:00", "2026-03-29T09:00+03:00"]),
    ("0 9 * * MON#2", "2026-01-01T00:00+03:00", ["2026-01-12T09:00+03:00", "2026-02-09T09:00+03:00"]),
    ("0 9 * * 3#1", "2026-01-01T00:00+03:00", ["2026-01-07T09:00+03:00", "2026-02-04T09:00+03:00"]),
    ("0 9 * * 5L", "2026-01-01T00:00+03:00", ["2026-01-30T09:00+03:00", "2026-02-27T09:00+03:00"]),
    ("0 9 * * FRIL", "2026-01-01T00:00+03:00", ["2026-01-30T09:00+03:00", "2026-02-27T09:00+03:00"]),
    ("0 0 21 1 *", "2026-01-01T00:00+03:00", ["2026-01-21T00:00+03:00", "2027-01-21T00:00+03:00"]),
    ("0 0 29 2 *", "2026-01-01T00:00+03:00", ["2028-02-29T00:00+03:00", "2032-02-29T00:00+03:00"]),
    ("0 9 1 * MON", "2026-08-01T00:00+03:00",  # both day fields: either matches (classic cron)
     ["2026-08-01T09:00+03:00", "2026-08-03T09:00+03:00", "2026-08-10T09:00+03:00"]),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_cron(expr: str, after: str, expected: list[str]) -> None:
    check(Cron(expr, tz="Africa/Dar_es_Salaam"), after, expected)


@pytest.mark.parametrize("expr", ["", "* * * *", "* * * * * * *", "61 * * * *", "0 9 15W * MON", "0 9 32W * *",
                                  "0 9 * * MON#6", "0 0 30 2 *", "nonsense here and there too"])
def test_cron_refuses_bad_expressions(expr: str) -> None:
    with pytest.raises(ValueError):
        Cron(expr)


def test_cron_start_and_until() -> None:
    rule = Cron("0 9 * * *", tz="UTC", start=t("2026-11-24T00:00Z"), until=t("2026-11-26T09:00Z"))
    assert fires(rule, "2026-11-01T00:00Z", 10) == [t("2026-11-24T09:00Z"), t("2026-11-25T09:00Z"),
                                                   t("2026-11-26T09:00Z")]


# ---------------------------------------------------------------- daily at


def test_daily_at_several_times() -> None:
    check(DailyAt("18:30", "06:00", tz="Europe/Madrid"), "2026-11-23T07:00+01:00",
          ["2026-11-23T18:30+01:00", "2026-11-24T06:00+01:00", "2026-11-24T18:30+01:00"])


def test_daily_at_with_seconds_and_until() -> None:
    rule = DailyAt("00:00:30", tz="UTC", until=t("2026-11-24T00:00:30Z"))
    assert fires(rule, "2026-11-22T12:00Z", 5) == [t("2026-11-23T00:00:30Z"), t("2026-11-24T00:00:30Z")]


@pytest.mark.parametrize("value", ["25:00", "9:00", "09-00", "noon"])
def test_daily_at_refuses_bad_times(value: str) -> None:
    with pytest.raises(ValueError):
        DailyAt(value)


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        DailyAt("00:00", tz="Mars/Olympus")


# ---------------------------------------------------------------- DST: the documented rule, three zones


@pytest.mark.parametrize(("rule", "after", "expected"), [
    # Madrid, spring: 02:30 does not exist on 29 March -> fires at the jump, 03:00 CEST
    (DailyAt("02:30", tz="Europe/Madrid"), "2026-03-28T00:00+01:00",
     ["2026-03-28T02:30+01:00", "2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"]),
    # Madrid, autumn: 02:30 happens twice on 25 October -> once, the first time (CEST)
    (Cron("30 2 * * *", tz="Europe/Madrid"), "2026-10-24T00:00+02:00",
     ["2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"]),
    # Madrid, autumn, hourly cron: the hour really passes twice -> fires in both
    (Cron("0 * * * *", tz="Europe/Madrid"), "2026-10-25T00:30+02:00",
     ["2026-10-25T01:00+02:00", "2026-10-25T02:00+02:00", "2026-10-25T02:00+01:00", "2026-10-25T03:00+01:00"]),
    # Madrid, spring, every 30 minutes: 02:00 and 02:30 are one fire at 03:00, then 03:30
    (Cron("*/30 * * * *", tz="Europe/Madrid"), "2026-03-29T01:00+01:00",
     ["2026-03-29T01:30+01:00", "2026-03-29T03:00+02:00", "2026-03-29T03:30+02:00"]),
    # New York, spring: 02:30 on 8 March does not exist -> 03:00 EDT
    (Cron("30 2 * * *", tz="America/New_York"), "2026-03-07T00:00-05:00",
     ["2026-03-07T02:30-05:00", "2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"]),
    # New York, autumn: 01:30 happens twice on 1 November -> once (EDT)
    (RRule("FREQ=DAILY;BYHOUR=1;BYMINUTE=30;BYSECOND=0", tz="America/New_York"), "2026-10-31T00:00-04:00",
     ["2026-10-31T01:30-04:00", "2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"]),
    # New York, autumn, RRULE HOURLY: both 01:00s fire
    (RRule("FREQ=HOURLY;BYMINUTE=0;BYSECOND=0", tz="America/New_York"), "2026-11-01T00:30-04:00",
     ["2026-11-01T01:00-04:00", "2026-11-01T01:00-05:00", "2026-11-01T02:00-05:00"]),
    # Sydney, autumn (5 April): 02:30 happens twice -> once (AEDT, +11)
    (DailyAt("02:30", tz="Australia/Sydney"), "2026-04-04T00:00+11:00",
     ["2026-04-04T02:30+11:00", "2026-04-05T02:30+11:00", "2026-04-06T02:30+10:00"]),
    # Sydney, spring (4 October): 02:30 does not exist -> 03:00 AEDT
    (Cron("30 2 * * *", tz="Australia/Sydney"), "2026-10-03T00:00+10:00",
     ["2026-10-03T02:30+10:00", "2026-10-04T03:00+11:00", "2026-10-05T02:30+11:00"]),
    # Sydney, a weekly RRULE keeps its local time through the change
    (RRule.weekly("SU", at="09:00", tz="Australia/Sydney"), "2026-03-28T00:00+11:00",
     ["2026-03-29T09:00+11:00", "2026-04-05T09:00+10:00", "2026-04-12T09:00+10:00"]),
], ids=["madrid-spring-daily", "madrid-autumn-daily", "madrid-autumn-hourly", "madrid-spring-30min",
        "ny-spring", "ny-autumn-rrule", "ny-autumn-hourly", "sydney-autumn", "sydney-spring", "sydney-weekly"])
def test_dst(rule: Rule, after: str, expected: list[str]) -> None:
    check(rule, after, expected)


def test_next_after_inside_the_repeated_hour() -> None:
    rule = Cron("*/30 * * * *", tz="Europe/Madrid")
    assert rule.next_after(t("2026-10-25T02:45+02:00")) == t("2026-10-25T02:00+01:00")
    assert rule.next_after(t("2026-10-25T02:10+01:00")) == t("2026-10-25T02:30+01:00")
    daily = DailyAt("02:30", tz="Europe/Madrid")
    assert daily.next_after(t("2026-10-25T02:10+01:00")) == t("2026-10-26T02:30+01:00")


# ---------------------------------------------------------------- adaptive


def test_adaptive_delay_by_outcome() -> None:
    rule = Adaptive(on_success=timedelta(minutes=5), on_idle=timedelta(minutes=30), on_error=timedelta(minutes=1))
    done = t("2026-11-23T10:00Z")
    assert rule.next_after_outcome(done, "success") == t("2026-11-23T10:05Z")
    assert rule.next_after_outcome(done, "idle") == t("2026-11-23T10:30Z")
    assert rule.next_after_outcome(done, "error") == t("2026-11-23T10:01Z")
    assert rule.next_after_outcome(done, "timeout") == t("2026-11-23T10:01Z")  # defaults to on_error
    assert rule.next_after(done) == t("2026-11-23T10:05Z")


def test_adaptive_refuses_negative_delays() -> None:
    with pytest.raises(ValueError):
        Adaptive(on_success=timedelta(seconds=-1))


# ---------------------------------------------------------------- specs: stored as JSON, rebuilt equal


@pytest.mark.parametrize("rule", [
    Once(datetime(2026, 12, 1, 9, tzinfo=MADRID)),
    Every(timedelta(weeks=2), start=datetime(2026, 11, 23, 9, tzinfo=MADRID), count=10),
    Every(minutes=15), Every(months=2, start=t("2026-01-31T09:00Z"), until=t("2027-01-01T00:00Z")),
    Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"), Cron("0 9 15W * *", start=t("2026-01-01T00:00Z")),
    RRule("FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6;BYMINUTE=0;COUNT=5", tz="Europe/Madrid", start=t("2026-01-01T00:00Z")),
    RRule.yearly(month=1, day=21, until=t("2030-01-22T00:00Z")), DailyAt("00:00", "12:00", tz="Europe/Madrid"),
    Adaptive(on_success=timedelta(minutes=5), on_idle=timedelta(hours=1), on_error=timedelta(seconds=30),
             on_timeout=timedelta(minutes=10)),
], ids=lambda r: type(r).__name__)
def test_spec_round_trip(rule: Rule) -> None:
    import json

    spec = json.loads(json.dumps(rule.to_spec()))
    again = rule_from_spec(spec)
    assert again == rule and type(again) is type(rule)
    after = t("2026-06-01T00:00Z")
    assert again.fires(after, 5) == rule.fires(after, 5)


def test_unknown_spec_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown schedule rule type"):
        rule_from_spec({"type": "pickle"})


def test_every_rule_has_words() -> None:
    assert Cron("0 6 * * MON", tz="Europe/Madrid").describe() == "At 06:00 on Monday (Europe/Madrid)"
    assert RRule.monthly(weekday="MO", nth=-1, at="06:00", tz="Europe/Madrid").describe() == (
        "every month on the last Monday at 06:00 (Europe/Madrid)")
    assert RRule.weekdays(at="08:00").describe() == "every week on weekdays at 08:00 (UTC)"
    assert RRule.yearly(month=1, day=21, at="09:00").describe() == "every year on 21 January at 09:00 (UTC)"
    assert DailyAt("00:00", tz="Europe/Madrid").describe() == "daily at 00:00 (Europe/Madrid)"
    assert Every(seconds=5, start=t("2026-11-23T09:00:00Z"), count=10).describe() == (
        "every 5 seconds from 2026-11-23 09:00:00 (UTC), 10 times")
    assert Every(weeks=2, start=t("2026-11-23T09:00:00Z")).describe().startswith("every 2 weeks from")
    assert "once at 2026-12-01 09:00:00" in Once(datetime(2026, 12, 1, 9, tzinfo=MADRID)).describe()
    assert Adaptive(on_success=timedelta(minutes=5)).describe().startswith("adaptive: next run 5 minutes after")
