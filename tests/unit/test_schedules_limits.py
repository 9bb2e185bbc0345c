"""Schedule rules and options at the limits (no database): the time range, absurd durations, counts, rules
that can never fire, payload caps. Every refusal is a FinejobsError (InvalidJobOptions or PayloadError)
that names the field; no rule raises a raw OverflowError or ValueError near the end of the time range."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import pytest

import finejobs
from finejobs import Adaptive, Cron, DailyAt, Every, InvalidJobOptions, Once, PayloadError, RRule
from finejobs.limits import MAX_ATTEMPTS, MAX_TIME, MIN_TIME
from finejobs.scheduler import make_spec, plan
from finejobs.schedules import Rule, first_fire, next_fire
from finejobs.store import ScheduleRow

NY = ZoneInfo("America/New_York")
LAST_NY = datetime.max.replace(tzinfo=NY)  # 9999-12-31 23:59:59.999999-05:00: past the end in UTC
FIRST_PLUS5 = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5)))  # before the start in UTC
T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


def refused(match: str) -> Any:
    return pytest.raises(InvalidJobOptions, match=match)


# ---------------------------------------------------------------- the time range


@pytest.mark.parametrize("moment", [LAST_NY, FIRST_PLUS5, datetime(9999, 12, 31, tzinfo=UTC),
                                    datetime(1, 1, 1, tzinfo=UTC)], ids=["max-ny", "min+5", "9999-12-31", "0001"])
@pytest.mark.parametrize(("field", "build"), [
    ("at", lambda m: Once(m)),
    ("start", lambda m: Every(hours=1, start=m)),
    ("until", lambda m: Every(hours=1, start=datetime(2026, 1, 1, tzinfo=UTC), until=m)),
    ("start", lambda m: Cron("0 6 * * *", start=m)),
    ("until", lambda m: Cron("0 6 * * *", until=m)),
    ("start", lambda m: RRule("FREQ=DAILY", start=m)),
    ("until", lambda m: RRule.daily(at="06:00", until=m)),
    ("start", lambda m: DailyAt("06:00", start=m)),
    ("until", lambda m: DailyAt("06:00", until=m)),
])
def test_times_outside_the_range_are_refused_naming_the_field(field: str, build: Any, moment: datetime) -> None:
    with refused(rf"\b{field} \(.*\) is outside the supported range"):
        build(moment)


@pytest.mark.parametrize("field", ["start", "end"])
@pytest.mark.parametrize("moment", [LAST_NY, FIRST_PLUS5])
def test_schedule_start_and_end_outside_the_range_are_refused(field: str, moment: datetime) -> None:
    with refused(rf"^{field} \("):
        options: dict[str, Any] = {field: moment}
        make_spec(None, "s", "k", Every(hours=1), **options)


@pytest.mark.parametrize("text", ["FREQ=DAILY;UNTIL=99991231", "FREQ=DAILY;UNTIL=99991231T235959Z",
                                  "DTSTART:99991231T120000\nRRULE:FREQ=DAILY", "FREQ=DAILY;UNTIL=00010101"])
def test_rrule_until_and_dtstart_outside_the_range_are_refused(text: str) -> None:
    with pytest.raises(InvalidJobOptions, match=r"UNTIL|DTSTART|until|start"):
        RRule(text, tz="America/New_York")


NEAR_END: list[Rule] = [
    Cron("0 0 * * *"), Cron("0 0 * * *", tz="Pacific/Kiritimati"), Cron("0 0 * * *", tz="America/Adak"),
    Cron("*/20 * * * * *", tz="America/New_York"), Cron("0 0 L * *"), Cron("0 9 15W * *"), Cron("0 9 L-2 * *"),
    Cron("0 * * * *", tz="Europe/Madrid"), RRule("FREQ=HOURLY", tz="Pacific/Kiritimati"),
    RRule("FREQ=MONTHLY;BYDAY=-1MO"), RRule("FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31", tz="Etc/GMT+12"),
    DailyAt("23:59", tz="Etc/GMT+12"), DailyAt("00:00", tz="Etc/GMT-14"),
    Every(minutes=1), Every(days=1, start=datetime(9000, 1, 1, tzinfo=UTC), tz="America/New_York"),
    Every(months=1, start=datetime(9000, 1, 31, tzinfo=UTC)), Every(years=1, start=datetime(9200, 2, 29, tzinfo=UTC)),
    Every(timedelta(days=36_525), start=datetime(9950, 1, 1, tzinfo=UTC)), Adaptive(timedelta(days=36_525)),
    Once(MAX_TIME),
]


@pytest.mark.parametrize("rule", NEAR_END, ids=repr)
def test_rules_end_quietly_at_the_end_of_the_time_range(rule: Rule) -> None:
    after = datetime(9999, 12, 20, tzinfo=UTC)
    fires = rule.fires(after, 50_000)
    assert all(after < f <= MAX_TIME for f in fires)
    daily = (isinstance(rule, Cron) and rule.expr.split()[-3] == "*") or isinstance(rule, DailyAt) or (
        isinstance(rule, RRule) and rule.freq == "HOURLY")
    if daily:
        assert fires[-1] > MAX_TIME - timedelta(days=2), "the last days of the range still fire"
    assert rule.next_after(MAX_TIME) is None
    assert rule.next_after(LAST_NY) is None  # an instant past the range, not even convertible to UTC
    assert rule.next_after(datetime.max.replace(tzinfo=UTC)) is None
    assert next_fire(rule, MAX_TIME - timedelta(microseconds=1)) in (None, MAX_TIME)
    assert first_fire(rule, now=MAX_TIME + timedelta(hours=1)) is None or isinstance(rule, Adaptive)


@pytest.mark.parametrize("rule", [r for r in NEAR_END if isinstance(r, Cron | DailyAt)], ids=repr)
def test_rules_start_at_the_start_of_the_time_range(rule: Rule) -> None:
    first = rule.next_after(datetime.min.replace(tzinfo=UTC))
    assert first is not None and MIN_TIME <= first < MIN_TIME + timedelta(days=400)
    assert rule.next_after(FIRST_PLUS5) == first


def test_a_schedule_whose_next_tick_would_leave_the_range_finishes() -> None:
    rule = Every(days=1, start=datetime(9999, 12, 1, tzinfo=UTC))
    assert next_fire(rule, datetime(9999, 12, 28, 12, tzinfo=UTC)) == MAX_TIME
    assert next_fire(rule, MAX_TIME) is None
    row = _row(rule, next_fire_at=MAX_TIME)
    decided = plan(row, rule, MAX_TIME)
    assert decided is not None and decided.fires == [MAX_TIME] and decided.next_fire_at is None
    adaptive = Adaptive(timedelta(days=36_525))
    assert adaptive.next_after_outcome(MAX_TIME - timedelta(days=1), "success") is None


# ---------------------------------------------------------------- absurd durations


@pytest.mark.parametrize(("build", "field"), [
    (lambda: Every(timedelta.max), "^Every: the interval \\(every 999999999 days"),
    (lambda: Every(timedelta(days=36_526)), "interval"),
    (lambda: Every(seconds=1e20), "interval"),
    (lambda: Every(seconds=float("inf")), "interval"),
    (lambda: Every(seconds=float("nan")), "seconds"),
    (lambda: Every(days=99999999999999999999), "interval"),
    (lambda: Every(weeks=10**9), "interval"),
    (lambda: Every(years=101), "interval"),
    (lambda: Every(months=1201), "interval"),
    (lambda: Every(years=10**30), "interval"),
    (lambda: Every(months=1.5), "months"),  # type: ignore[arg-type]
    (lambda: Every(timedelta(0)), "interval"),
    (lambda: Every(timedelta(seconds=-1)), "interval"),
    (lambda: Every("1h"), "interval"),  # type: ignore[arg-type]
    (lambda: Adaptive(timedelta.max), "on_success"),
    (lambda: Adaptive(timedelta(minutes=1), on_error=timedelta(days=40_000)), "on_error"),
    (lambda: RRule("FREQ=YEARLY;INTERVAL=101", start=T0), "INTERVAL"),
    (lambda: RRule("FREQ=SECONDLY;INTERVAL=99999999999999999999", start=T0), "INTERVAL"),
])
def test_absurd_intervals_are_refused_naming_the_option(build: Any, field: str) -> None:
    with pytest.raises(InvalidJobOptions, match=field):
        build()
    assert issubclass(InvalidJobOptions, finejobs.FinejobsError) and issubclass(InvalidJobOptions, ValueError)


def test_the_longest_intervals_are_accepted() -> None:
    assert Every(timedelta(days=36_525)).step == timedelta(days=36_525)
    assert Every(years=100, start=T0).months == 1200
    assert RRule("FREQ=YEARLY;INTERVAL=100", start=T0).interval == 100


@pytest.mark.parametrize(("options", "field"), [
    ({"misfire_grace": timedelta.max}, "misfire_grace"),
    ({"misfire_grace": 10**30}, "misfire_grace"),
    ({"misfire_grace": timedelta(seconds=-1)}, "misfire_grace"),
    ({"misfire_grace": "soon"}, "misfire_grace"),
    ({"expires_in": timedelta.max}, "expires_in"),
    ({"expires_in": timedelta(days=36_526)}, "expires_in"),
    ({"expires_in": float("inf")}, "expires_in"),
    ({"expires_in": timedelta(0)}, "expires_in"),
    ({"misfire_limit": 0}, "misfire_limit"),
    ({"misfire_limit": 10**9}, "misfire_limit"),
    ({"misfire": "sometimes"}, "misfire"),
    ({"overlap": "never"}, "overlap"),
    ({"priority": 40_000}, "priority"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": -1}, "max_attempts"),
    ({"max_attempts": MAX_ATTEMPTS + 1}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"),
    ({"max_attempts": 2.5}, "max_attempts"),
    ({"description": "a\x00b"}, "description"),
    ({"description": "x" * 10_000}, "description"),
    ({"end": T0 - HOUR, "start": T0}, "end"),
])
def test_bad_schedule_options_are_refused_naming_the_option(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidJobOptions, match=field):
        make_spec(None, "s", "k", Every(hours=1), **options)


def test_max_attempts_zero_is_not_the_default_any_more() -> None:
    assert make_spec(None, "s", "k", Every(hours=1)).max_attempts == 3
    assert make_spec(None, "s", "k", Every(hours=1), max_attempts=MAX_ATTEMPTS).max_attempts == MAX_ATTEMPTS
    assert make_spec(None, "s", "k", Every(hours=1), misfire_grace=0).misfire_grace == timedelta(0)


@pytest.mark.parametrize(("name", "match"), [("", "name must not be empty"), ("   ", "name must not be blank"),
                                             ("a\x00b", "name must not contain NUL"), ("x" * 201, "name has 201"),
                                             (None, "name must be a string")])
def test_bad_schedule_names_are_refused(name: Any, match: str) -> None:
    with refused(match):
        make_spec(None, name, "k", Every(hours=1))


def test_bad_kinds_and_rules_are_refused() -> None:
    with refused("kind must not be empty"):
        make_spec(None, "s", "", Every(hours=1))
    with refused("rule must be a finejobs rule"):
        make_spec(None, "s", "k", "0 6 * * *")  # type: ignore[arg-type]


# ---------------------------------------------------------------- rules that can never fire


NEVER: list[tuple[str, Any]] = [
    ("cron 30 February", lambda: Cron("0 0 30 2 *")),
    ("cron 31 April", lambda: Cron("0 0 31 4 *")),
    ("cron L-30 in February", lambda: Cron("0 0 L-30 2 *")),
    ("cron 30W in February", lambda: Cron("0 0 30W 2 *")),
    ("rrule yearly 30 February", lambda: RRule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30")),
    ("rrule daily 30 February", lambda: RRule("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30")),
    ("rrule secondly 30 February", lambda: RRule("FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30")),
    ("rrule monthly 31 April", lambda: RRule("FREQ=MONTHLY;BYMONTH=4;BYMONTHDAY=31")),
    ("rrule month 13", lambda: RRule("FREQ=YEARLY;BYMONTH=13")),
    ("rrule day 32", lambda: RRule("FREQ=MONTHLY;BYMONTHDAY=32")),
    ("rrule week 53 in January", lambda: RRule("FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO;BYMONTH=1")),
    ("rrule 6th Monday", lambda: RRule("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6")),
    ("rrule 2nd of one a week", lambda: RRule("FREQ=WEEKLY;BYDAY=MO;BYSETPOS=2")),
    ("rrule 3rd of two a day", lambda: RRule("FREQ=DAILY;BYHOUR=9,10;BYSETPOS=3")),
    ("every until before start", lambda: Every(hours=1, start=T0, until=T0 - HOUR)),
    ("rrule until before start", lambda: RRule("FREQ=DAILY;UNTIL=20260101", start=T0)),
]


@pytest.mark.parametrize(("what", "build"), NEVER, ids=[n for n, _ in NEVER])
def test_rules_that_can_never_fire_are_refused_at_once(what: str, build: Any) -> None:
    began = time.process_time()
    with pytest.raises(InvalidJobOptions, match=r"never fire"):
        build()
    assert time.process_time() - began < 0.2, f"{what}: refusing it took too long"


@pytest.mark.parametrize(("rule", "options"), [
    (Every(hours=1, start=T0), {"end": T0 - HOUR}),
    (Once(T0), {"start": T0 + HOUR}),
    (Once(T0), {"end": T0 - HOUR}),
    (Cron("0 6 * * MON"), {"start": datetime(2026, 11, 24, tzinfo=UTC), "end": datetime(2026, 11, 29, tzinfo=UTC)}),
    (RRule("FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1"), {"start": datetime(2026, 2, 1, tzinfo=UTC),
                                                   "end": datetime(2026, 12, 1, tzinfo=UTC)}),
])
def test_a_schedule_whose_window_holds_no_tick_is_refused(rule: Rule, options: dict[str, Any]) -> None:
    with refused("never fires"):
        make_spec(None, "s", "k", rule, **options)


def test_a_rule_whose_ticks_are_all_past_is_accepted_and_finished() -> None:
    """Declared in code, a one-off that already ran must not break the app's import."""
    past = make_spec(None, "s", "k", Once(datetime(2020, 1, 1, tzinfo=UTC)))
    assert past.values(now=T0)["next_fire_at"] is None
    ended = make_spec(None, "t", "k", Cron("0 6 * * *"), end=datetime(2020, 1, 1, tzinfo=UTC))
    assert ended.values(now=T0)["next_fire_at"] is None


@pytest.mark.parametrize("text", ["FREQ=DAILY;INTERVAL=7;BYDAY=MO", "FREQ=HOURLY;INTERVAL=168;BYDAY=MO",
                                  "FREQ=MONTHLY;INTERVAL=48;BYMONTH=2;BYMONTHDAY=29"])
def test_a_search_for_an_rrule_that_cannot_fire_is_bounded(text: str) -> None:
    """Anchored so that its INTERVAL never meets its days (a Tuesday start, a non-leap February): not
    caught at construction, but each search stops after the horizon instead of walking to year 9999."""
    start = datetime(2026, 2, 3, tzinfo=UTC)  # a Tuesday, in a non-leap year
    rule = RRule(text, start=start)
    began = time.process_time()
    assert rule.next_after(start) is None
    assert time.process_time() - began < 0.5
    with refused("never fires"):
        make_spec(None, "s", "k", rule)


def test_rare_rules_still_fire() -> None:
    leap_day = RRule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", start=T0)  # at 08:00, the start's time of day
    assert leap_day.next_after(T0) == datetime(2028, 2, 29, 8, tzinfo=UTC)
    monday_29 = RRule("FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYMINUTE=0", start=T0)
    assert monday_29.next_after(T0) == datetime(2044, 2, 29, tzinfo=UTC)
    fifth_monday = RRule("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=5", start=T0)
    assert fifth_monday.next_after(T0) == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert Cron("0 0 29 2 *").next_after(T0) == datetime(2028, 2, 29, tzinfo=UTC)
    assert Cron("0 0 L-28 2 *").next_after(T0) == datetime(2028, 2, 1, tzinfo=UTC)
    far = RRule("FREQ=MONTHLY;BYDAY=-1MO")  # anchored in 2001, asked 7,000 years later
    assert far.next_after(datetime(9000, 1, 1, tzinfo=UTC)) == datetime(9000, 1, 27, tzinfo=UTC)


# ---------------------------------------------------------------- COUNT


def test_rrule_count_is_exact_up_to_its_limit_and_refused_above() -> None:
    rule = RRule("FREQ=SECONDLY;COUNT=100000", start=T0)
    began = time.process_time()
    assert rule.next_after(T0 + timedelta(seconds=99_998)) == T0 + timedelta(seconds=99_999)
    assert rule.next_after(T0 + timedelta(seconds=99_999)) is None
    assert time.process_time() - began < 5
    with refused(r"count \(100001\) is over the limit of 100,000"):
        RRule("FREQ=SECONDLY;COUNT=100001", start=T0)
    with refused("count"):
        RRule.daily(count=10**6, start=T0)


def test_every_count_is_exact_without_limit() -> None:
    rule = Every(seconds=1, start=T0, count=10**9)
    assert rule.next_after(T0 + timedelta(seconds=10**9 - 2)) == T0 + timedelta(seconds=10**9 - 1)
    assert rule.next_after(T0 + timedelta(seconds=10**9 - 1)) is None


def test_the_scheduler_counts_runs_not_occurrences() -> None:
    """A counted rule's ticks, as the scheduler sees them, go on past the occurrences a pause let pass:
    the count is kept in the row (fired) and stops plan()."""
    rule = Every(hours=1, start=T0, count=6)
    late = T0 + timedelta(hours=10)
    assert rule.next_after(late) is None  # the rule object, alone, counts from its start
    assert next_fire(rule, late) == late + HOUR  # the scheduler's tick ignores the count
    two_done = plan(_row(rule, next_fire_at=late, fired=2), rule, late)
    assert two_done is not None and two_done.fires == [late] and two_done.next_fire_at == late + HOUR
    last = plan(_row(rule, next_fire_at=late, fired=5), rule, late)
    assert last is not None and last.fires == [late] and last.next_fire_at is None
    used_up = plan(_row(rule, next_fire_at=late, fired=6), rule, late)
    assert used_up is not None and used_up.fires == [] and used_up.next_fire_at is None


def test_catch_up_of_a_counted_rule_stops_at_its_count() -> None:
    rule = Every(hours=1, start=T0, count=6)
    now = T0 + timedelta(hours=9, minutes=30)
    row = _row(rule, next_fire_at=T0 + 2 * HOUR, fired=2, misfire="all")
    decided = plan(row, rule, now)
    assert decided is not None
    assert decided.fires == [T0 + timedelta(hours=h) for h in (2, 3, 4, 5)]  # 4 left: the first four due
    assert decided.next_fire_at is None and decided.skipped == 4


# ---------------------------------------------------------------- payloads


def test_schedule_payloads_are_capped_like_job_payloads() -> None:
    with pytest.raises(PayloadError, match="over the limit of 1000000"):
        make_spec(None, "s", "k", Every(hours=1), payload={"blob": "x" * 1_000_000})
    small = finejobs.Queue("postgresql://127.0.0.1:1/never-connected", max_payload_bytes=100)
    with pytest.raises(PayloadError, match=r"over the limit of 100$"):
        make_spec(small, "s", "k", Every(hours=1), payload={"blob": "x" * 100})
    assert make_spec(small, "s", "k", Every(hours=1), payload={"blob": "x" * 80}).payload == {"blob": "x" * 80}


@pytest.mark.parametrize(("payload", "field"), [
    ({"a": "x\x00y"}, "a"),
    ({"a\x00": 1}, "a\\x00"),
    ({"a": ["ok", {"b": "\x00"}]}, "a.1.b"),
    ({"a": "\ud800"}, "a"),
    ({"a": float("nan")}, "a"),
    ({"a": -0.0}, "a"),
    ({"a": {1, 2}}, "a"),
    ({1: "x"}, "1"),
    ({"deep": _nested(70)}, "deep"),
    ([1, 2], "<root>"),
    ("text", "<root>"),
])
def test_schedule_payloads_postgresql_cannot_store_are_refused(payload: Any, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        make_spec(None, "s", "k", Every(hours=1), payload=payload)
    assert caught.value.fields[0].startswith(field)


def test_a_schedules_payload_is_stored_exactly() -> None:
    spec = make_spec(None, "s", "k", Every(hours=1), payload={"big": 1e20, "n": 1, "s": "é"})
    assert spec.payload == {"big": 1e20, "n": 1, "s": "é"}
    assert spec.values(now=T0)["payload"] == '{"big":100000000000000000000.0,"n":1,"s":"\\u00e9"}'


def test_the_kinds_model_validates_a_schedules_payload() -> None:
    class Batch(pydantic.BaseModel):
        size: int

    queue = finejobs.Queue("postgresql://127.0.0.1:1/never-connected", max_payload_bytes=50)

    @queue.job("batch", model=Batch)
    def batch(payload: Batch) -> None:
        pass

    with pytest.raises(PayloadError, match="size"):
        make_spec(queue, "s", batch, Every(hours=1), payload={"size": "many"})
    assert make_spec(queue, "s", "batch", Every(hours=1), payload={"size": 3}).payload == {"size": 3}


# ---------------------------------------------------------------- helpers


def _row(rule: Rule, *, next_fire_at: datetime | None, fired: int = 0, misfire: str = "coalesce") -> ScheduleRow:
    return ScheduleRow(
        id=1, name="s", description="", kind="k", payload={}, shard="default", priority=0, max_attempts=3,
        rule=rule.to_spec(), timezone=rule.tz, start_at=None, end_at=None, paused=False, misfire=misfire,
        misfire_limit=100, misfire_grace=timedelta(seconds=60), overlap="skip", expires_in=None,
        next_fire_at=next_fire_at, last_fire_at=None, last_job_id=None, runs=fired, skipped=0, last_error=None,
        source="runtime", version=1, created_at=T0, updated_at=T0, fired=fired,
    )
