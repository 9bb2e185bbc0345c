"""JobFilter: every field checked once, here, with a finejobs error naming it; the JSON form round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finejobs.errors import FinejobsError, InvalidJobOptions
from finejobs.filters import MAX_FILTER_TEXT, JobFilter
from finejobs.jobs import JobState

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_an_empty_filter_matches_everything() -> None:
    assert JobFilter().is_empty
    assert JobFilter().to_json() == {}
    assert not JobFilter(kind="a").is_empty


@pytest.mark.parametrize("name", [s.value for s in JobState])
def test_a_state_by_name_becomes_the_enum(name: str) -> None:
    filt = JobFilter(state=name)  # type: ignore[arg-type]
    assert filt.state is JobState(name)
    assert filt.to_json() == {"state": name}


@pytest.mark.parametrize("bad", ["done", "", "FAILED", 3, ["failed"], b"failed", {"state": "failed"}])
def test_an_unknown_state_is_refused_and_the_known_ones_listed(bad: Any) -> None:
    with pytest.raises(InvalidJobOptions, match=r"state: unknown state .*\(one of scheduled, available"):
        JobFilter(state=bad)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("kind", "", "kind must not be empty"),
    ("kind", "a\x00b", "kind must not contain NUL"),
    ("kind", 5, "kind must be a string"),
    ("kind", "k" * (MAX_FILTER_TEXT + 1), "kind"),
    ("schedule", "s\x00", "schedule must not contain NUL"),
    ("error", "\x00", "error must not contain NUL"),
    ("error", "x" * (MAX_FILTER_TEXT + 1), "error"),
    ("error", "\ud800", "error"),
    ("database", "", "database must not be empty"),
    ("shard", "Bad Shard", "invalid shard name"),
    ("shard", "", "invalid shard name"),
    ("shard", 7, "invalid shard name"),
    ("created_after", datetime(2026, 1, 1), "naive datetime"),
    ("finished_before", "2026-01-01", "must be a datetime"),
    ("created_before", datetime(10000 - 1, 12, 31, tzinfo=UTC), "outside the supported range"),
])
def test_each_bad_field_is_refused_by_name(field: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidJobOptions, match=message):
        JobFilter(**{field: value})


def test_a_text_at_the_limit_is_accepted() -> None:
    assert JobFilter(kind="k" * MAX_FILTER_TEXT, error="e" * MAX_FILTER_TEXT).kind == "k" * MAX_FILTER_TEXT


@pytest.mark.parametrize("pair", [("created_after", "created_before"), ("finished_after", "finished_before")])
def test_an_empty_range_is_refused(pair: tuple[str, str]) -> None:
    low, high = pair
    with pytest.raises(InvalidJobOptions, match=f"{low} .* must be before {high}"):
        JobFilter(**{low: T0, high: T0})
    with pytest.raises(InvalidJobOptions, match=f"must be before {high}"):
        JobFilter(**{low: T0, high: T0 - timedelta(seconds=1)})
    assert JobFilter(**{low: T0, high: T0 + timedelta(microseconds=1)})


def test_but_validates_again_and_refuses_unknown_fields() -> None:
    filt = JobFilter(kind="a", shard="s1")
    assert filt.but(kind=None) == JobFilter(shard="s1")
    assert filt.but(state="failed").state is JobState.FAILED  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="unknown state"):
        filt.but(state="nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="unknown filter field"):
        filt.but(colour="red")


def test_from_json_refuses_unknown_keys_bad_times_and_non_objects() -> None:
    with pytest.raises(InvalidJobOptions, match=r"unknown filter field\(s\): colour"):
        JobFilter.from_json({"colour": "red"})
    with pytest.raises(InvalidJobOptions, match="created_after: not an ISO 8601 time"):
        JobFilter.from_json({"created_after": "yesterday"})
    with pytest.raises(InvalidJobOptions, match="naive datetime"):
        JobFilter.from_json({"created_after": "2026-11-22T08:00:00"})
    for bad in (["state", "failed"], "state=failed", None, 3):
        with pytest.raises(InvalidJobOptions, match="a filter must be a JSON object"):
            JobFilter.from_json(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="unknown filter field"):
        JobFilter.from_json({1: "x"})  # type: ignore[dict-item]


def test_from_json_skips_empty_values() -> None:
    assert JobFilter.from_json({"kind": "", "shard": None, "state": "failed"}) == JobFilter(state=JobState.FAILED)


def test_every_refusal_is_a_finejobs_error() -> None:
    assert issubclass(InvalidJobOptions, FinejobsError)


def test_the_time_zone_is_kept_through_json() -> None:
    plus2 = timezone(timedelta(hours=2))
    filt = JobFilter(created_after=datetime(2026, 11, 22, 10, tzinfo=plus2))
    again = JobFilter.from_json(json.loads(json.dumps(filt.to_json())))
    assert again == filt
    assert again.created_after is not None and again.created_after.utcoffset() == timedelta(hours=2)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=30)
_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                      timezones=st.just(UTC))


@st.composite
def filters(draw: st.DrawFn) -> JobFilter:
    values: dict[str, Any] = {
        "state": draw(st.none() | st.sampled_from(list(JobState))),
        "kind": draw(st.none() | _text),
        "shard": draw(st.none() | st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)),
        "schedule": draw(st.none() | _text),
        "error": draw(st.none() | _text),
        "database": draw(st.none() | _text),
    }
    for low, high in (("created_after", "created_before"), ("finished_after", "finished_before")):
        a, b = draw(st.none() | _times), draw(st.none() | _times)
        if a is not None and b is not None and a >= b:
            a, b = (b, a) if b < a else (a, None)
        values[low], values[high] = a, b
    return JobFilter(**values)


@given(filters())
def test_json_round_trip(filt: JobFilter) -> None:
    data = json.loads(json.dumps(filt.to_json()))
    assert JobFilter.from_json(data) == filt
    assert all(value is not None for value in data.values())
