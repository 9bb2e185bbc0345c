"""The console's schedule form (finejobs.web.schedule_form): every rule type parsed into its rule, every bad
field refused with a FormError naming it, and every rule turned back into fields that rebuild it exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from finejobs import Adaptive, Cron, DailyAt, Every, InvalidJobOptions, Once, RRule, Rule
from finejobs.errors import FinejobsError, PayloadError, UnknownKindError
from finejobs.web import schedule_form as sf
from finejobs.web.pages_schedules import name_of, schedule_key

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def form(**fields: Any) -> dict[str, Any]:
    values = sf.blank_form()
    values.update({"name": "s", "kind": "ping"})
    values.update(fields)
    return values


def rule(**fields: Any) -> Rule:
    return sf.parse_rule(form(**fields), now=NOW)


def spec(r: Rule) -> dict[str, Any]:
    return r.to_spec()


# ------------------------------------------------------------------ each rule type


@pytest.mark.parametrize(("fields", "expected"), [
    ({"interval_every": "15", "interval_unit": "minutes"}, Every(minutes=15)),
    ({"interval_every": "2", "interval_unit": "hours", "count": "5"}, Every(hours=2, start=NOW, count=5)),
    ({"interval_every": "1.5", "interval_unit": "seconds"}, Every(seconds=1.5)),
    ({"interval_every": "2", "interval_unit": "weeks", "start": "2026-11-23 09:00", "tz": "Europe/Paris",
      "until": "2027-03-01 09:00"},
     Every(weeks=2, start=datetime(2026, 11, 23, 9, tzinfo=PARIS), until=datetime(2027, 3, 1, 9, tzinfo=PARIS),
           tz="Europe/Paris")),
    ({"interval_every": "1", "interval_unit": "months", "start": "2026-01-31 06:00"},
     Every(months=1, start=datetime(2026, 1, 31, 6, tzinfo=UTC))),
    ({"interval_every": "1", "interval_unit": "years", "start": "2026-02-01T00:00:00Z"},
     Every(years=1, start=datetime(2026, 2, 1, tzinfo=UTC))),
])
def test_interval(fields: dict[str, Any], expected: Rule) -> None:
    assert spec(rule(rule_type="interval", **fields)) == spec(expected)


def test_weekly_days_at_a_time_in_a_timezone() -> None:
    found = rule(rule_type="weekly", weekly_days=["FR", "MO", "WE"], weekly_at="09:00", tz="Europe/Paris")
    assert spec(found) == spec(RRule.weekly("MO,WE,FR", at="09:00", tz="Europe/Paris"))
    assert found.describe() == "every week on Monday, Wednesday, Friday at 09:00 (Europe/Paris)"


def test_weekly_every_two_weeks_starts_now_without_a_start() -> None:
    found = rule(rule_type="weekly", weekly_days=["MO"], weekly_every="2", weekly_at="07:30")
    assert spec(found) == spec(RRule.weekly("MO", every=2, at="07:30", start=NOW))


def test_weekly_count_and_until() -> None:
    found = rule(rule_type="weekly", weekly_days="TU", weekly_at="10:00", count="3", start="2026-11-23 00:00")
    assert spec(found) == spec(RRule.weekly("TU", at="10:00", start=datetime(2026, 11, 23, tzinfo=UTC), count=3))
    until = rule(rule_type="weekly", weekly_days=["TU"], until="2026-12-31 23:59")
    assert isinstance(until, RRule) and until.until == datetime(2026, 12, 31, 23, 59, tzinfo=UTC)


def test_monthly_on_a_day_and_on_the_nth_weekday() -> None:
    assert spec(rule(rule_type="monthly_day", monthly_day="-1", monthly_day_at="06:00")) == spec(
        RRule.monthly(day=-1, at="06:00"))
    assert spec(rule(rule_type="monthly_day", monthly_day="15", monthly_day_every="3",
                     start="2026-12-01 00:00")) == spec(
        RRule.monthly(day=15, every=3, at="09:00", start=datetime(2026, 12, 1, tzinfo=UTC)))
    assert spec(rule(rule_type="monthly_nth", monthly_nth="2", monthly_nth_weekday="WE")) == spec(
        RRule.monthly(weekday="WE", nth=2, at="09:00"))
    assert spec(rule(rule_type="monthly_nth", monthly_nth="-1", monthly_nth_weekday="MO",
                     tz="Europe/Madrid")) == spec(RRule.monthly(weekday="MO", nth=-1, at="09:00", tz="Europe/Madrid"))


def test_yearly_nth_weekday_and_date() -> None:
    assert spec(rule(rule_type="yearly_nth", yearly_nth="1", yearly_nth_weekday="SU", yearly_nth_month="3",
                     yearly_nth_at="10:00")) == spec(RRule.yearly(month=3, weekday="SU", nth=1, at="10:00"))
    assert spec(rule(rule_type="yearly_date", yearly_date_day="21", yearly_date_month="1",
                     until="2030-01-21 09:00")) == spec(
        RRule.yearly(month=1, day=21, at="09:00", until=datetime(2030, 1, 21, 9, tzinfo=UTC)))


def test_cron_rrule_daily_once_adaptive() -> None:
    assert spec(rule(rule_type="cron", cron=" 0 6 * * MON ", tz="Africa/Dar_es_Salaam")) == spec(
        Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"))
    assert spec(rule(rule_type="rrule", rrule="FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6;BYMINUTE=0", count="4")) == spec(
        RRule("FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6;BYMINUTE=0;COUNT=4", start=NOW))
    assert spec(rule(rule_type="daily", daily_times="18:30, 06:00")) == spec(DailyAt("06:00", "18:30"))
    assert spec(rule(rule_type="once", once_at="2026-12-01 09:00", tz="Europe/Madrid")) == spec(
        Once(datetime(2026, 12, 1, 9, tzinfo=ZoneInfo("Europe/Madrid"))))
    assert spec(rule(rule_type="once", once_at="2026-12-01T08:00:00Z", tz="Europe/Madrid")) == spec(
        Once(datetime(2026, 12, 1, 9, tzinfo=ZoneInfo("Europe/Madrid"))))
    assert spec(rule(rule_type="adaptive", adaptive_success="5m", adaptive_idle="30m", adaptive_error="1m",
                     adaptive_timeout="1h30m")) == spec(
        Adaptive(timedelta(minutes=5), timedelta(minutes=30), timedelta(minutes=1), timedelta(minutes=90)))


def test_whole_form_options() -> None:
    parsed = sf.parse_form(form(
        name="renewals", kind="renew", payload='{"region": "north"}', description="weekly", shard="district-3",
        priority="5", max_attempts="7", active_from="2026-12-01 00:00", active_until="2027-12-01 00:00",
        misfire="all", misfire_limit="10", misfire_grace="2m", overlap="wait", expires_in="1h", paused="on",
        tz="Europe/Paris"), now=NOW)
    assert (parsed.name, parsed.kind, parsed.payload, parsed.paused) == ("renewals", "renew", {"region": "north"},
                                                                         True)
    assert parsed.options == {
        "description": "weekly", "shard": "district-3", "priority": 5, "max_attempts": 7,
        "start": datetime(2026, 12, 1, tzinfo=PARIS), "end": datetime(2027, 12, 1, tzinfo=PARIS),
        "misfire": "all", "misfire_limit": 10, "misfire_grace": timedelta(minutes=2), "overlap": "wait",
        "expires_in": timedelta(hours=1)}
    defaults = sf.parse_form(form(payload="", shard="", priority="", max_attempts="", misfire_limit="",
                                  misfire_grace="", expires_in=""), now=NOW)
    assert defaults.payload is None and not defaults.paused
    assert (defaults.options["shard"], defaults.options["priority"], defaults.options["max_attempts"],
            defaults.options["misfire_limit"], defaults.options["misfire_grace"], defaults.options["expires_in"]) \
        == (None, None, None, 100, timedelta(seconds=60), None)


# ------------------------------------------------------------------ every bad input


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"name": ""}, "name", "name"),
    ({"name": "   "}, "name", "name"),
    ({"name": "x" * 201}, "name", "name"),
    ({"name": "a\x00b"}, "name", "NUL"),
    ({"kind": ""}, "kind", "kind"),
    ({"rule_type": "hourly-ish"}, "rule_type", "rule type"),
    ({"tz": "Mars/Olympus"}, "tz", "timezone"),
    ({"tz": "../../etc/passwd"}, "tz", "timezone"),
    ({"interval_every": "0"}, "interval_every", "every"),
    ({"interval_every": "-3"}, "interval_every", "every"),
    ({"interval_every": "two"}, "interval_every", "every"),
    ({"interval_every": "1.5", "interval_unit": "hours"}, "interval_every", "every"),
    ({"interval_every": "1000", "interval_unit": "years"}, "interval_every", "100 years"),
    ({"interval_unit": "fortnights"}, "interval_unit", "unit"),
    ({"count": "0"}, "count", "count"),
    ({"count": "many"}, "count", "count"),
    ({"start": "tomorrow"}, "start", "start"),
    ({"start": "2026-13-01 00:00"}, "start", "start"),
    ({"until": "2026-11-01 00:00", "start": "2026-11-02 00:00"}, "until", "until"),
    ({"until": "0001-01-01 00:00"}, "until", "until"),
    ({"rule_type": "daily", "daily_times": ""}, "daily_times", "times"),
    ({"rule_type": "daily", "daily_times": "25:00"}, "daily_times", "time of day"),
    ({"rule_type": "daily", "count": "3"}, "count", "count"),
    ({"rule_type": "weekly", "weekly_days": []}, "weekly_days", "days"),
    ({"rule_type": "weekly", "weekly_days": ["XX"]}, "weekly_days", "days"),
    ({"rule_type": "weekly", "weekly_days": ["MO"], "weekly_at": "9am"}, "weekly_at", "time of day"),
    ({"rule_type": "weekly", "weekly_days": ["MO"], "weekly_every": "0"}, "weekly_every", "every"),
    ({"rule_type": "monthly_day", "monthly_day": "0"}, "monthly_day", "day of the month"),
    ({"rule_type": "monthly_day", "monthly_day": "32"}, "monthly_day", "day of the month"),
    ({"rule_type": "monthly_nth", "monthly_nth": "6"}, "monthly_nth", "which"),
    ({"rule_type": "monthly_nth", "monthly_nth_weekday": "Funday"}, "monthly_nth_weekday", "weekday"),
    ({"rule_type": "yearly_nth", "yearly_nth_month": "13"}, "yearly_nth_month", "month"),
    ({"rule_type": "yearly_nth", "yearly_nth_month": ""}, "yearly_nth_month", "month"),
    ({"rule_type": "yearly_date", "yearly_date_month": "2", "yearly_date_day": "30"}, "yearly_date_day", "never"),
    ({"rule_type": "yearly_date", "yearly_date_day": ""}, "yearly_date_day", "day"),
    ({"rule_type": "cron", "cron": ""}, "cron", "cron"),
    ({"rule_type": "cron", "cron": "0 6 * *"}, "cron", "fields"),
    ({"rule_type": "cron", "cron": "0 0 30 2 *"}, "cron", "never fires"),
    ({"rule_type": "cron", "count": "2"}, "count", "count"),
    ({"rule_type": "rrule", "rrule": "FREQ=SOMETIMES"}, "rrule", "FREQ"),
    ({"rule_type": "rrule", "rrule": "FREQ=WEEKLY;COUNT=2", "count": "3"}, "count", "already has COUNT"),
    ({"rule_type": "rrule", "rrule": "FREQ=WEEKLY;UNTIL=20300101", "until": "2030-01-01 00:00"}, "until",
     "already has UNTIL"),
    ({"rule_type": "once", "once_at": ""}, "once_at", "at"),
    ({"rule_type": "once", "once_at": "soon"}, "once_at", "at"),
    ({"rule_type": "once", "once_at": "2026-12-01 09:00", "start": "2026-11-01 00:00"}, "start", "start"),
    ({"rule_type": "once", "once_at": "2026-12-01 09:00", "count": "2"}, "count", "count"),
    ({"rule_type": "adaptive", "adaptive_success": ""}, "adaptive_success", "after success"),
    ({"rule_type": "adaptive", "adaptive_success": "5 parsecs"}, "adaptive_success", "duration"),
    ({"rule_type": "adaptive", "adaptive_success": "5m", "adaptive_error": "1mo"}, "adaptive_error", "duration"),
    ({"rule_type": "adaptive", "adaptive_success": "5m", "until": "2027-01-01 00:00"}, "until", "until"),
    ({"payload": "{not json"}, "payload", "JSON"),
    ({"payload": "[1, 2]"}, "payload", "JSON object"),
    ({"shard": "", "priority": "99999"}, "priority", "priority"),
    ({"priority": "high"}, "priority", "priority"),
    ({"max_attempts": "0"}, "max_attempts", "max attempts"),
    ({"misfire": "sometimes"}, "misfire", "misfire"),
    ({"misfire_limit": "0"}, "misfire_limit", "misfire limit"),
    ({"misfire_grace": "forever"}, "misfire_grace", "misfire grace"),
    ({"expires_in": "0s"}, "expires_in", "expires in"),
    ({"expires_in": "200y"}, "expires_in", "expires in"),
    ({"overlap": "maybe"}, "overlap", "overlap"),
    ({"active_from": "2026-12-02 00:00", "active_until": "2026-12-01 00:00"}, "active_until", "active until"),
    ({"active_from": "someday"}, "active_from", "active from"),
]


@pytest.mark.parametrize(("fields", "field", "words"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_the_field(fields: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(sf.FormError) as refused:
        sf.parse_form(form(**fields), now=NOW)
    assert refused.value.field == field
    assert words.lower() in str(refused.value).lower()
    assert isinstance(refused.value, InvalidJobOptions) and isinstance(refused.value, ValueError)


def test_duration_text_round_trips() -> None:
    for seconds in (1, 59, 60, 90, 3600, 5400, 86400, 90061, 604800, 1.5, 0.25):
        text = sf.duration_text(timedelta(seconds=seconds))
        assert sf.parse_duration("f", "f", text) == timedelta(seconds=seconds), text
    assert sf.duration_text(None) == ""
    assert sf.parse_duration("f", "f", "1h 30m") == timedelta(minutes=90)
    assert sf.parse_duration("f", "f", "45") == timedelta(seconds=45)


def test_refusals_after_the_form_name_their_field() -> None:
    assert sf.field_of(PayloadError("ping", ["x"], "x: field required"), "cron") == "payload"
    assert sf.field_of(UnknownKindError("kind 'x' is not registered"), "cron") == "kind"
    assert sf.field_of(FinejobsError("a schedule named 'x' already exists (use update)"), "cron") == "name"
    assert sf.field_of(InvalidJobOptions("rule: every week never fires after start ..."), "weekly") == "weekly_days"
    assert sf.field_of(InvalidJobOptions("end (2026...) is before start (2027...)"), "cron") == "active_until"
    assert sf.field_of(FinejobsError("something else"), "cron") is None


# ------------------------------------------------------------------ a rule back into the form


ROUND_TRIP: list[Rule] = [
    Every(minutes=15), Every(seconds=90), Every(seconds=0.5), Every(hours=2, start=NOW, count=5),
    Every(weeks=2, start=datetime(2026, 11, 23, 9, tzinfo=PARIS), until=datetime(2027, 3, 1, 9, tzinfo=PARIS)),
    Every(months=3, start=datetime(2026, 1, 31, tzinfo=UTC)), Every(years=2, start=NOW),
    Every(days=1, tz="Europe/Paris"),
    RRule.weekly("MO,WE,FR", at="09:00", tz="Europe/Paris"), RRule.weekly("SU", every=3, at="07:15:30", start=NOW),
    RRule.weekly("TU", at="10:00", start=NOW, count=4), RRule.monthly(day=-1, at="06:00"),
    RRule.monthly(day=15, every=2, start=NOW), RRule.monthly(weekday="FR", nth=-1, at="17:00", tz="Asia/Tokyo"),
    RRule.yearly(month=3, weekday="SU", nth=1, at="10:00"),
    RRule.yearly(month=1, day=21, at="09:00", until=datetime(2030, 1, 21, 9, tzinfo=UTC)),
    RRule("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", tz="Europe/Madrid"),
    RRule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", tz="Europe/Madrid"),  # no BYMINUTE: kept as the RRULE it is
    Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"), Cron("*/30 * * * * *", until=datetime(2027, 1, 1, tzinfo=UTC)),
    DailyAt("06:00", "18:30:15", tz="Europe/Madrid"), Once(datetime(2026, 12, 1, 9, tzinfo=PARIS)),
    Once(datetime(2026, 10, 25, 2, 30, tzinfo=PARIS, fold=1)),  # the second 02:30 of the night clocks go back
    Adaptive(timedelta(minutes=5), timedelta(minutes=30), timedelta(seconds=61)),
]


@pytest.mark.parametrize("original", ROUND_TRIP, ids=[r.describe()[:60] for r in ROUND_TRIP])
def test_a_rule_back_into_the_form_rebuilds_it(original: Rule) -> None:
    tz = getattr(original, "tz", "UTC")
    fields = sf.rule_form(original, ZoneInfo(tz))
    rebuilt = sf.parse_rule({**sf.blank_form(), **fields, "tz": tz}, now=NOW + timedelta(days=3))
    assert spec(rebuilt) == spec(original)


def test_friendly_types_are_chosen_when_they_rebuild_the_rule() -> None:
    assert sf.rule_form(RRule.weekly("MO,WE", at="09:00"), ZoneInfo("UTC"))["rule_type"] == "weekly"
    assert sf.rule_form(RRule.monthly(weekday="WE", nth=2), ZoneInfo("UTC"))["rule_type"] == "monthly_nth"
    assert sf.rule_form(RRule.yearly(month=9, weekday="MO", nth=-1), ZoneInfo("UTC"))["rule_type"] == "yearly_nth"
    assert sf.rule_form(RRule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"), ZoneInfo("UTC"))["rule_type"] == "rrule"


# ------------------------------------------------------------------ schedule names in URLs


@pytest.mark.parametrize("name", ["hourly", "renewals north", "new", "pause-all", "resume-all", "a/b", "x/edit",
                                  "~tilde", ".", "..", "back\\slash", "line\nbreak", "é-ü-漢字", "100%", "q?x#y"])
def test_every_name_has_a_url_of_its_own(name: str) -> None:
    key = schedule_key(name)
    assert "/" not in key and key not in ("new", "pause-all", "resume-all", ".", "..")
    from urllib.parse import unquote
    assert name_of(unquote(key)) == name
