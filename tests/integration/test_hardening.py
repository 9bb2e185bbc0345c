"""Nothing a row, a payload or a handler holds can crash a worker or strand a job (real PostgreSQL).

The worst rows are written directly with SQL, around every check finejobs makes at enqueue, and a worker
claims them: it fails each of those jobs alone, with the reason in its errors, and goes on.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import finejobs
from finejobs import Cancel, InvalidJobOptions, JobState, PayloadError, Queue, Retry, Snooze
from finejobs.limits import MAX_DELAY, MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS
from finejobs.store import libpq_url
from finejobs.testing import FakeClock

DB = psycopg.Connection[tuple[Any, ...]]
NO_RETRY = Retry(max_attempts=1)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def insert_raw(db: DB, *, kind: str = "ok", payload: str = "{}", run_at: str | None = None,
               expires_at: str | None = None, errors: str = "[]", created_at: str | None = None) -> int:
    """Write one job row the way no finejobs API would (the values are SQL literals cast by the server)."""
    row = db.execute(
        "INSERT INTO finejobs_jobs (kind, payload, run_at, expires_at, errors, created_at) "
        "VALUES (%s, %s::jsonb, coalesce(%s::timestamptz, %s), %s::timestamptz, %s::jsonb, "
        "coalesce(%s::timestamptz, now())) RETURNING id",
        (kind, payload, run_at, datetime(2026, 11, 22, 7, tzinfo=UTC), expires_at, errors, created_at),
    ).fetchone()
    assert row is not None
    return int(row[0])


def row_of(db: DB, job_id: int) -> tuple[str, list[dict[str, Any]]]:
    found = db.execute("SELECT state, errors::text FROM finejobs_jobs WHERE id = %s", (job_id,)).fetchone()
    assert found is not None
    return found[0], json.loads(found[1])


@pytest.fixture
def ran(queue: Queue) -> list[Any]:
    seen: list[Any] = []

    @queue.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        seen.append(payload)

    return seen


WORST_ROWS: dict[str, dict[str, str]] = {
    "payload is an array": {"payload": "[1, 2, 3]"},
    "payload is a string": {"payload": '"text"'},
    "payload nested 3000 deep": {"payload": '{"a":' * 3000 + "1" + "}" * 3000},
    "run_at is -infinity": {"run_at": "-infinity"},
    "expires_at is infinity": {"expires_at": "infinity"},
    "created_at after year 9999": {"created_at": "20000-01-01T00:00:00Z"},
    "errors hold no objects": {"errors": "[1, \"x\", null]"},
    "errors is not an array": {"errors": '{"attempt": "one"}'},
}


@pytest.mark.parametrize("name", list(WORST_ROWS))
def test_a_worker_fails_a_row_it_cannot_decode_and_goes_on(queue: Queue, ran: list[Any], db: DB, name: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    bad = insert_raw(db, **WORST_ROWS[name])
    good = queue.enqueue("ok", {"n": 1})
    worker = queue.worker(listen=False)
    with caplog.at_level(logging.ERROR, logger="finejobs.worker"):
        claimed = worker.work_once()
    assert {j.id for j in claimed} == {bad, good.id}
    state, errors = row_of(db, bad)
    assert state == "failed"
    assert errors[-1]["error"] == "Unrunnable"
    assert "could not be decoded" in errors[-1]["message"]
    assert ran == [{"n": 1}], "the good job ran; the bad one did not"
    assert queue.get(good.id).state is JobState.SUCCEEDED
    assert any(f"job {bad}: cannot be run" in r.getMessage() for r in caplog.records)


def test_a_running_worker_survives_every_worst_row(queue: Queue, ran: list[Any], db: DB) -> None:
    """The real producer loop (threads, batched completion) claims all the worst rows at once."""
    bad = [insert_raw(db, **values) for values in WORST_ROWS.values()]
    with queue.worker(listen=False, poll_interval=0.05) as worker:
        wait_until(lambda: all(row_of(db, i)[0] == "failed" for i in bad))
        queue.enqueue("ok", {"after": True})
        wait_until(lambda: {"after": True} in ran)
        assert not worker.ended()
    assert worker.error is None


class Alert(pydantic.BaseModel):
    patient_id: int


def test_a_stored_payload_that_no_longer_fits_the_model_fails_without_retries(queue: Queue, db: DB) -> None:
    @queue.job("typed", retry=Retry(max_attempts=5))
    def typed(alert: Alert) -> None:
        raise AssertionError("never called")

    job_id = insert_raw(db, kind="typed", payload='{"patient_id": "not a number"}')
    queue.worker(listen=False).work_once()
    state, errors = row_of(db, job_id)
    assert state == "failed", "retrying cannot make the payload fit"
    assert errors[-1]["error"] == "Unrunnable" and "patient_id" in errors[-1]["message"]


# ---------------------------------------------------------------- what a handler does


class ExitingStr(Exception):
    def __str__(self) -> str:
        raise SystemExit(3)


class NotAStr(Exception):
    def __str__(self) -> str:
        return 42  # type: ignore[return-value]


HANDLER_ENDS: dict[str, tuple[Callable[[], BaseException], str]] = {
    "Snooze(timedelta.max)": (lambda: Snooze(timedelta.max), "available"),
    "an error whose __str__ raises SystemExit": (ExitingStr, "failed"),
    "an error whose __str__ returns a non-str": (NotAStr, "failed"),
    "a lone surrogate in the message": (lambda: RuntimeError("bad \ud800 text"), "failed"),
    "a NUL in the message": (lambda: RuntimeError("bad \x00 text"), "failed"),
    "a 10 MB message": (lambda: RuntimeError("x" * 10_000_000), "failed"),
    "a 1 MB Cancel reason": (lambda: Cancel("why " * 250_000), "cancelled"),
    "Cancel with a lone surrogate": (lambda: Cancel("\udfff"), "cancelled"),
}


@pytest.mark.parametrize("name", list(HANDLER_ENDS))
def test_whatever_a_handler_raises_its_job_leaves_running_at_once(queue: Queue, db: DB, clock: FakeClock,
                                                                  name: str) -> None:
    make, expected = HANDLER_ENDS[name]

    @queue.job("raises", retry=NO_RETRY)
    def raises(payload: dict[str, Any]) -> None:
        raise make()

    job = raises.enqueue({})
    worker = queue.worker(listen=False)
    worker.work_once()
    state, errors = row_of(db, job.id)
    assert state == expected
    assert worker.held() == {}, "no lease is kept on it"
    if expected != "available":
        record = errors[-1]
        assert len(record["message"]) <= MAX_MESSAGE_CHARS
        assert record["traceback"] is None or len(record["traceback"]) <= MAX_TRACEBACK_CHARS
    else:
        run_at = queue.get(job.id).run_at
        assert run_at == clock() + MAX_DELAY, "a snooze is clamped to the documented maximum"


def test_a_huge_message_is_cut_and_marked(queue: Queue, db: DB) -> None:
    @queue.job("loud", retry=NO_RETRY)
    def loud(payload: dict[str, Any]) -> None:
        raise RuntimeError("start " + "x" * 100_000 + " end")

    job = loud.enqueue({})
    queue.worker(listen=False).work_once()
    record = queue.get(job.id).errors[-1]
    assert record.message.startswith("start ") and "characters cut]" in record.message
    assert record.traceback is not None and "characters cut]" in record.traceback
    assert record.traceback.rstrip().endswith("end"), "a traceback keeps its last lines"


def test_a_huge_retry_backoff_is_clamped(queue: Queue, clock: FakeClock) -> None:
    policy = Retry(max_attempts=3, backoff=timedelta(days=999_999), max_backoff=timedelta.max)

    @queue.job("slow_retry", retry=policy)
    def slow_retry(payload: dict[str, Any]) -> None:
        raise RuntimeError("again")

    job = slow_retry.enqueue({})
    queue.worker(listen=False).work_once()
    again = queue.get(job.id)
    assert again.state is JobState.SCHEDULED
    assert again.run_at == clock() + MAX_DELAY


def test_log_lines_escape_what_errors_hold(queue: Queue, caplog: pytest.LogCaptureFixture) -> None:
    @queue.job("forger", retry=NO_RETRY)
    def forger(payload: dict[str, Any]) -> None:
        raise RuntimeError("oops\n2026-11-22 INFO job 1 ok succeeded\x1b[31m red" + "y" * 50_000)

    forger.enqueue({})
    with caplog.at_level(logging.INFO, logger="finejobs.worker"):
        queue.worker(listen=False).work_once()
    lines = [r.getMessage() for r in caplog.records if "forger" in r.getMessage()]
    assert lines, "the outcome was logged"
    for line in lines:
        assert "\n" not in line and "\x1b" not in line
        assert len(line) < 3_000
    assert any("\\n2026-11-22 INFO" in line and "\\x1b[31m" in line for line in lines)


# ---------------------------------------------------------------- async handlers behind decorators


def plain_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


def test_an_async_handler_behind_functools_wraps_runs_its_body(queue: Queue) -> None:
    bodies: list[int] = []

    @queue.job("wrapped")
    @plain_wrapper
    async def wrapped(payload: dict[str, Any]) -> None:
        bodies.append(payload["n"])

    assert wrapped.is_async
    job = wrapped.enqueue({"n": 7})
    queue.worker(listen=False).work_once()
    assert bodies == [7]
    assert queue.get(job.id).state is JobState.SUCCEEDED


def test_a_sync_handler_returning_a_coroutine_never_succeeds(queue: Queue) -> None:
    bodies: list[int] = []

    async def body(payload: dict[str, Any]) -> None:
        bodies.append(1)

    @queue.job("hidden_async", retry=NO_RETRY)
    def hidden(payload: dict[str, Any]) -> Any:  # no functools.wraps: nothing shows it is async
        return body(payload)

    job = hidden.enqueue({})
    queue.worker(listen=False).work_once()
    done = queue.get(job.id)
    assert done.state is JobState.FAILED
    assert "returned an awaitable" in done.errors[-1].message
    assert bodies == []


# ---------------------------------------------------------------- validation cannot be skipped


class Patient(pydantic.BaseModel):
    patient_id: int
    dose: str


def test_model_construct_with_wrong_types_is_refused(queue: Queue, db: DB) -> None:
    @queue.job("typed")
    def typed(patient: Patient) -> None:
        pass

    with pytest.raises(PayloadError) as refused:
        typed.enqueue(Patient.model_construct(patient_id="x", dose=5))
    assert refused.value.fields == ["patient_id", "dose"]
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (0,)


def exactly(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1.0 is not 1; -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(exactly(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(exactly(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def test_floats_that_jsonb_would_turn_into_ints_come_back_as_the_same_floats(queue: Queue) -> None:
    @queue.job("numbers")
    def numbers(payload: dict[str, Any]) -> None:
        pass

    sent = {"max": 1.7976931348623157e308, "big": 1e308, "e20": 1e20, "neg": -2.5e200, "tiny": 5e-324,
            "one": 1.0, "int": 10**20, "nested": [1e16, {"x": 1.5e300}]}
    job = numbers.enqueue(sent)
    assert exactly(queue.get(job.id).payload, sent)


def test_negative_zero_is_refused_not_silently_changed(queue: Queue) -> None:
    @queue.job("numbers")
    def numbers(payload: dict[str, Any]) -> None:
        pass

    with pytest.raises(PayloadError) as refused:
        numbers.enqueue({"a": [0.0, -0.0]})
    assert refused.value.fields == ["a.1"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON)
def test_random_payloads_round_trip_exactly_or_are_refused(queue: Queue, value: Any) -> None:
    kind = queue.kinds.get("any")
    if kind is None:
        @queue.job("any")
        def any_kind(payload: dict[str, Any]) -> None:
            pass

        kind = any_kind
    payload = {"v": value}
    try:
        job = kind.enqueue(payload)
    except PayloadError as refused:
        assert refused.fields, "a refusal names the field"
        return
    assert exactly(queue.get(job.id).payload, payload)


# ---------------------------------------------------------------- conn= on the wrong database


@pytest.fixture
def other_database(empty_database_url: str) -> Iterator[str]:
    finejobs.Queue(empty_database_url).migrate()
    yield empty_database_url


def test_conn_on_another_database_is_refused_without_a_shard_map(queue: Queue, other_database: str,
                                                                 db: DB) -> None:
    @queue.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        pass

    with psycopg.connect(libpq_url(other_database)) as elsewhere:
        with pytest.raises(InvalidJobOptions, match="another database than the queue's"):
            ok.enqueue({}, conn=elsewhere)
        elsewhere.commit()
        assert elsewhere.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (0,)
    with psycopg.connect(libpq_url(queue.url)) as here:
        ok.enqueue({}, conn=here)  # the queue's own database: accepted
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (1,)
