"""Payload validation and enqueue options, checked before anything touches the database.

The Queue points at a database that does not exist: nothing here may connect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

import finejobs
from finejobs import EnqueueError, InvalidJobOptions, JobKind, JobSpec, PayloadError, Queue
from finejobs.store import NewJob

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


class Address(pydantic.BaseModel):
    street: str
    zip: str


class Order(pydantic.BaseModel):
    name: str
    count: int
    address: Address | None = None


class Renamed(pydantic.BaseModel):
    sender: str = pydantic.Field(alias="from")


class Measurement(pydantic.BaseModel):
    value: float


@pytest.fixture
def offline_queue() -> Queue:
    return Queue("postgresql://x@127.0.0.1/none")


@pytest.fixture
def order(offline_queue: Queue) -> JobKind[Any, Any]:
    @offline_queue.job("order.place")
    def place(payload: Order) -> None:
        pass

    return place


@pytest.fixture
def raw(offline_queue: Queue) -> JobKind[Any, Any]:
    @offline_queue.job("raw.dict")
    def handle(payload):  # type: ignore[no-untyped-def]
        pass

    return handle


def new_job(queue: Queue, kind: JobKind[Any, Any], payload: Any, **options: Any) -> NewJob:
    return queue._new_job(kind, JobSpec(payload, **options), NOW)


# ---------------------------------------------------------------- JobKind.validate


def test_model_comes_from_the_handler_annotation(order: JobKind[Any, Any]) -> None:
    assert order.model is Order


def test_valid_dict_is_normalised(order: JobKind[Any, Any]) -> None:
    assert order.validate({"name": "x", "count": "3"}) == {"name": "x", "count": 3, "address": None}


def test_model_instance_is_accepted(order: JobKind[Any, Any]) -> None:
    payload = Order(name="x", count=2, address=Address(street="Main", zip="123"))
    assert order.validate(payload) == {"name": "x", "count": 2, "address": {"street": "Main", "zip": "123"}}


def test_wrong_type_is_refused_and_named(order: JobKind[Any, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate({"name": "x", "count": "many"})
    assert info.value.fields == ["count"]
    assert info.value.kind == "order.place"
    assert "count" in str(info.value)


def test_missing_field_is_refused_and_named(order: JobKind[Any, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate({"name": "x"})
    assert info.value.fields == ["count"]


def test_every_bad_field_is_named(order: JobKind[Any, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate({"count": "many"})
    assert sorted(info.value.fields) == ["count", "name"]


def test_nested_field_is_named_by_dotted_path(order: JobKind[Any, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate({"name": "x", "count": 1, "address": {"street": "Main"}})
    assert info.value.fields == ["address.zip"]


def test_extra_field_is_refused_and_named(order: JobKind[Any, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate({"name": "x", "count": 1, "colour": "red", "amount": 3})
    assert info.value.fields == ["amount", "colour"]
    assert "extra" in str(info.value)


def test_extra_field_in_a_nested_model_is_refused_and_named(order: JobKind[Any, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate({"name": "x", "count": 1, "address": {"street": "Main", "zip": "1", "floor": 3}})
    assert info.value.fields == ["address.floor"]


@pytest.mark.parametrize("payload", [None, 3, "name=x", ["name", "x"], b"{}"])
def test_non_dict_payload_is_refused(order: JobKind[Any, Any], payload: Any) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate(payload)
    assert info.value.fields == ["<root>"]


@pytest.mark.parametrize("payload", [None, 3, "x", [1, 2]])
def test_non_dict_payload_is_refused_without_a_model(raw: JobKind[Any, Any], payload: Any) -> None:
    assert raw.model is None
    with pytest.raises(PayloadError) as info:
        raw.validate(payload)
    assert info.value.fields == ["<root>"]


def test_payload_errors_are_enqueue_errors_and_value_errors(order: JobKind[Any, Any]) -> None:
    with pytest.raises(PayloadError) as info:
        order.validate({})
    assert isinstance(info.value, EnqueueError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, finejobs.FinejobsError)


def test_stored_payload_parses_back_into_the_model(order: JobKind[Any, Any]) -> None:
    stored = order.validate({"name": "x", "count": 2})
    assert order.parse(stored) == Order(name="x", count=2)


def test_aliased_field_round_trips_from_enqueue_to_handler(offline_queue: Queue) -> None:
    @offline_queue.job("mail.send")
    def send(payload: Renamed) -> None:
        pass

    stored = send.validate({"from": "alice"})
    assert send.parse(stored) == Renamed(**{"from": "alice"})


# ---------------------------------------------------------------- Queue._new_job: payload size and JSON


@pytest.mark.parametrize("payload", [{"s": {1, 2}}, {"d": datetime(2026, 1, 1)}, {"o": object()}])
def test_not_json_serializable_payload_is_refused(offline_queue: Queue, raw: JobKind[Any, Any],
                                                  payload: dict[str, Any]) -> None:
    with pytest.raises(PayloadError, match="JSON"):
        new_job(offline_queue, raw, payload)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused(offline_queue: Queue, raw: JobKind[Any, Any], value: float) -> None:
    with pytest.raises(PayloadError):
        new_job(offline_queue, raw, {"x": value})


def test_non_finite_floats_are_refused_through_a_model(offline_queue: Queue) -> None:
    @offline_queue.job("measure")
    def measure(payload: Measurement) -> None:
        pass

    with pytest.raises(PayloadError):
        new_job(offline_queue, measure, {"value": float("nan")})


def test_oversize_payload_is_refused() -> None:
    queue = Queue("postgresql://x@127.0.0.1/none", max_payload_bytes=100)

    @queue.job("big")
    def big(payload):  # type: ignore[no-untyped-def]
        pass

    assert new_job(queue, big, {"x": "a" * 80}).payload_json == '{"x":"' + "a" * 80 + '"}'
    with pytest.raises(PayloadError, match="over the limit") as info:
        new_job(queue, big, {"x": "a" * 100})
    assert info.value.fields == ["<root>"]


def test_payload_size_counts_encoded_bytes_not_characters() -> None:
    queue = Queue("postgresql://x@127.0.0.1/none", max_payload_bytes=50)

    @queue.job("big")
    def big(payload):  # type: ignore[no-untyped-def]
        pass

    new_job(queue, big, {"x": "é" * 5})
    with pytest.raises(PayloadError):
        new_job(queue, big, {"x": "€" * 20})  # 20 characters, 120 bytes once encoded


# ---------------------------------------------------------------- Queue._new_job: options


def test_defaults(offline_queue: Queue, order: JobKind[Any, Any]) -> None:
    row = new_job(offline_queue, order, {"name": "x", "count": 1})
    assert row.kind == "order.place"
    assert row.shard == "default"
    assert row.run_at == NOW
    assert row.expires_at is None
    assert row.priority == 0
    assert row.max_attempts == finejobs.Retry().max_attempts
    assert row.unique_key is None


@pytest.mark.parametrize("option", ["run_at", "expires_at"])
def test_naive_datetimes_are_refused(offline_queue: Queue, raw: JobKind[Any, Any], option: str) -> None:
    with pytest.raises(InvalidJobOptions, match="naive"):
        new_job(offline_queue, raw, {}, **{option: datetime(2030, 1, 1)})


def test_non_datetime_run_at_is_refused(offline_queue: Queue, raw: JobKind[Any, Any]) -> None:
    with pytest.raises(InvalidJobOptions):
        new_job(offline_queue, raw, {}, run_at="2030-01-01T00:00:00Z")


def test_other_timezones_are_accepted(offline_queue: Queue, raw: JobKind[Any, Any]) -> None:
    cet = timezone(timedelta(hours=1))
    row = new_job(offline_queue, raw, {}, run_at=datetime(2030, 1, 1, 9, tzinfo=cet))
    assert row.run_at == datetime(2030, 1, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize("gap", [timedelta(0), -timedelta(seconds=1), -timedelta(days=1)])
def test_expires_at_not_after_run_at_is_refused(offline_queue: Queue, raw: JobKind[Any, Any],
                                                gap: timedelta) -> None:
    run_at = NOW + timedelta(hours=1)
    with pytest.raises(InvalidJobOptions, match="expires_at"):
        new_job(offline_queue, raw, {}, run_at=run_at, expires_at=run_at + gap)


def test_expires_at_before_now_when_run_at_defaults_to_now_is_refused(
    offline_queue: Queue, raw: JobKind[Any, Any]
) -> None:
    with pytest.raises(InvalidJobOptions):
        new_job(offline_queue, raw, {}, expires_at=NOW - timedelta(minutes=1))


def test_expires_in_is_counted_from_run_at(offline_queue: Queue) -> None:
    @offline_queue.job("alert", expires_in=timedelta(minutes=15))
    def alert(payload):  # type: ignore[no-untyped-def]
        pass

    run_at = NOW + timedelta(hours=2)
    assert new_job(offline_queue, alert, {}, run_at=run_at).expires_at == run_at + timedelta(minutes=15)
    assert new_job(offline_queue, alert, {}).expires_at == NOW + timedelta(minutes=15)


@pytest.mark.parametrize(
    "shard",
    [
        "x'; drop table finejobs_jobs;--",
        "District-3",
        "-leading-dash",
        "_leading_underscore",
        "has space",
        "a" * 64,
        "tab\there",
        "line\n",
        "ünïcode",
        "a/b",
        "a;b",
        3,
    ],
)
def test_bad_shard_names_are_refused(offline_queue: Queue, raw: JobKind[Any, Any], shard: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="shard"):
        new_job(offline_queue, raw, {}, shard=shard)


@pytest.mark.parametrize("shard", ["default", "district-3", "a", "0", "a.b_c-d", "a" * 63])
def test_good_shard_names_are_accepted(offline_queue: Queue, raw: JobKind[Any, Any], shard: str) -> None:
    assert new_job(offline_queue, raw, {}, shard=shard).shard == shard


def test_empty_shard_name_is_refused(offline_queue: Queue, raw: JobKind[Any, Any]) -> None:
    with pytest.raises(InvalidJobOptions):
        new_job(offline_queue, raw, {}, shard="")


@pytest.mark.parametrize("priority", [32768, -32769, 10**9, 1.0, "1"])
def test_priority_out_of_range_is_refused(offline_queue: Queue, raw: JobKind[Any, Any],
                                          priority: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="priority"):
        new_job(offline_queue, raw, {}, priority=priority)


@pytest.mark.parametrize("priority", [32767, -32768, 0])
def test_priority_limits_are_accepted(offline_queue: Queue, raw: JobKind[Any, Any], priority: int) -> None:
    assert new_job(offline_queue, raw, {}, priority=priority).priority == priority


def test_kind_priority_is_the_default_and_is_range_checked(offline_queue: Queue) -> None:
    @offline_queue.job("urgent", priority=5)
    def urgent(payload):  # type: ignore[no-untyped-def]
        pass

    assert new_job(offline_queue, urgent, {}).priority == 5
    assert new_job(offline_queue, urgent, {}, priority=-1).priority == -1
    with pytest.raises(ValueError, match="priority"):
        offline_queue.job("too.urgent", priority=40000)


@pytest.mark.parametrize("key", ["", 42])
def test_bad_unique_key_is_refused(offline_queue: Queue, raw: JobKind[Any, Any], key: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="unique_key"):
        new_job(offline_queue, raw, {}, unique_key=key)


# ---------------------------------------------------------------- job kind declaration


def test_kind_names_are_unique(offline_queue: Queue, raw: JobKind[Any, Any]) -> None:
    with pytest.raises(ValueError, match="already registered"):
        offline_queue.job("raw.dict")(lambda payload: None)


@pytest.mark.parametrize("name", ["", "x" * 201])
def test_kind_name_length_is_checked(offline_queue: Queue, name: str) -> None:
    with pytest.raises(ValueError):
        offline_queue.job(name)


@pytest.mark.parametrize("option", ["expires_in", "timeout"])
def test_non_positive_durations_are_refused(offline_queue: Queue, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        offline_queue.job("k", **{option: timedelta(0)})


def test_unknown_kind_name_is_refused(offline_queue: Queue, raw: JobKind[Any, Any]) -> None:
    with pytest.raises(finejobs.UnknownKindError, match=r"raw\.dict"):
        offline_queue.enqueue("nope", {})
