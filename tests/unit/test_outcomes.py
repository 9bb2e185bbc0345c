"""finejobs.outcomes: from what a handler did to the Outcome the store writes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from finejobs import Cancel, Idle, Job, JobState, Retry, Snooze
from finejobs.outcomes import HandlerTimeout, attempt_error, failed, released, succeeded

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
NO_JITTER = Retry(max_attempts=3, backoff=10 * timedelta(seconds=1), jitter=timedelta(0))


def running_job(*, attempt: int = 1, max_attempts: int = 3, expires_at: datetime | None = None) -> Job:
    return Job(
        id=7, kind="k", shard="default", payload={}, state=JobState.RUNNING, priority=0,
        run_at=NOW - MIN, expires_at=expires_at, attempt=attempt, max_attempts=max_attempts,
        unique_key=None, lease_owner="w1", lease_expires_at=NOW + MIN, errors=(),
        created_at=NOW - MIN, started_at=NOW, finished_at=None,
    )


def boom() -> ValueError:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc


# ---------------------------------------------------------------- success and release


def test_succeeded() -> None:
    out = succeeded(running_job(attempt=2), now=NOW)
    assert (out.job_id, out.attempt, out.state, out.finished_at) == (7, 2, "succeeded", NOW)
    assert out.error is None and out.uncount == 0


def test_idle_with_a_value_is_idle_and_keeps_the_value() -> None:
    plain = succeeded(running_job(), now=NOW, result=Idle)
    assert (plain.state, plain.result, plain.return_value) == ("succeeded", "idle", None)
    told = succeeded(running_job(), now=NOW, result=Idle({"message": "nothing new"}))
    assert (told.state, told.result, told.return_value) == ("succeeded", "idle", '{"message":"nothing new"}')
    assert succeeded(running_job(), now=NOW, result={"message": "x"}).result is None  # not idle
    assert succeeded(running_job(), now=NOW, result=Idle(float("nan"))).return_value is None  # JSON cannot keep it


def test_released_goes_back_to_available_now_without_counting() -> None:
    out = released(running_job(), now=NOW)
    assert (out.state, out.run_at, out.uncount, out.error, out.finished_at) == ("available", NOW, 1, None, None)


# ---------------------------------------------------------------- failures


def test_retry_is_available_in_the_future_with_the_error_recorded() -> None:
    out = failed(running_job(attempt=1), boom(), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "available"
    assert out.run_at == NOW + timedelta(seconds=10)
    assert out.finished_at is None
    assert out.uncount == 0
    assert out.error is not None
    assert (out.error.attempt, out.error.at, out.error.error, out.error.message, out.error.worker) == (
        1, NOW, "ValueError", "boom", "w1")
    assert out.error.traceback is not None and "ValueError: boom" in out.error.traceback
    assert "in boom" in out.error.traceback  # the frame where it was raised


def test_second_retry_waits_twice_as_long() -> None:
    out = failed(running_job(attempt=2), boom(), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.run_at == NOW + timedelta(seconds=20)


def test_exhausted_attempts_fail() -> None:
    out = failed(running_job(attempt=3, max_attempts=3), boom(), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "failed"
    assert out.finished_at == NOW
    assert out.error is not None and out.error.error == "ValueError"


def test_job_max_attempts_wins_over_the_policy() -> None:
    # An operator's retry raises a job's max_attempts above its kind's policy.
    out = failed(running_job(attempt=3, max_attempts=4), boom(), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "available"


def test_error_not_in_on_fails_at_once() -> None:
    policy = Retry(max_attempts=5, on=(ConnectionError,))
    out = failed(running_job(attempt=1, max_attempts=5), boom(), retry=policy, now=NOW, worker="w1")
    assert out.state == "failed"
    assert out.finished_at == NOW


def test_error_in_on_retries() -> None:
    policy = Retry(max_attempts=5, on=(ConnectionError,))
    out = failed(running_job(attempt=1, max_attempts=5), ConnectionResetError("reset"), retry=policy,
                 now=NOW, worker="w1")
    assert out.state == "available"


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
def test_base_exceptions_fail_without_retry(error: BaseException) -> None:
    out = failed(running_job(attempt=1), error, retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "failed"
    assert out.error is not None and out.error.error == type(error).__name__


def test_retry_that_would_pass_expiry_expires() -> None:
    job = running_job(attempt=1, expires_at=NOW + timedelta(seconds=5))
    out = failed(job, boom(), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "expired"
    assert out.finished_at == NOW
    assert out.error is not None and out.error.error == "ValueError"


def test_retry_that_fits_before_expiry_is_scheduled() -> None:
    job = running_job(attempt=1, expires_at=NOW + timedelta(seconds=11))
    out = failed(job, boom(), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "available"
    assert out.run_at is not None and out.run_at < job.expires_at  # type: ignore[operator]


def test_last_attempt_fails_rather_than_expires() -> None:
    job = running_job(attempt=3, max_attempts=3, expires_at=NOW + timedelta(seconds=5))
    assert failed(job, boom(), retry=NO_JITTER, now=NOW, worker="w1").state == "failed"


def test_non_retryable_error_fails_rather_than_expires() -> None:
    job = running_job(attempt=1, expires_at=NOW + timedelta(seconds=5))
    policy = Retry(on=(ConnectionError,))
    assert failed(job, boom(), retry=policy, now=NOW, worker="w1").state == "failed"


def test_handler_timeout_is_retried_and_named() -> None:
    out = failed(running_job(), HandlerTimeout(timedelta(milliseconds=200)), retry=NO_JITTER, now=NOW,
                 worker="w1")
    assert out.state == "available"
    assert out.error is not None and out.error.error == "HandlerTimeout"
    assert "0.2s" in out.error.message


# ---------------------------------------------------------------- Cancel and Snooze


def test_cancel_ends_the_job_cancelled_with_the_reason() -> None:
    out = failed(running_job(attempt=1), Cancel("customer left"), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "cancelled"
    assert out.finished_at == NOW
    assert out.error is not None
    assert (out.error.error, out.error.message) == ("Cancel", "customer left")


def test_cancel_on_the_last_attempt_is_still_cancelled() -> None:
    job = running_job(attempt=3, max_attempts=3)
    assert failed(job, Cancel(), retry=NO_JITTER, now=NOW, worker="w1").state == "cancelled"


def test_snooze_runs_again_later_without_counting_or_error() -> None:
    out = failed(running_job(attempt=2), Snooze(timedelta(minutes=5)), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "available"
    assert out.run_at == NOW + timedelta(minutes=5)
    assert out.uncount == 1
    assert out.error is None
    assert out.finished_at is None


def test_snooze_on_the_last_attempt_still_snoozes() -> None:
    job = running_job(attempt=3, max_attempts=3)
    out = failed(job, Snooze(30), retry=NO_JITTER, now=NOW, worker="w1")
    assert (out.state, out.uncount, out.run_at) == ("available", 1, NOW + timedelta(seconds=30))


def test_snooze_past_expiry_expires() -> None:
    job = running_job(expires_at=NOW + timedelta(minutes=1))
    out = failed(job, Snooze(timedelta(minutes=2)), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "expired"
    assert out.finished_at == NOW
    assert out.uncount == 0


def test_snooze_before_expiry_snoozes() -> None:
    job = running_job(expires_at=NOW + timedelta(minutes=3))
    out = failed(job, Snooze(timedelta(minutes=2)), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "available"


def test_snooze_rejects_negative_delays_and_takes_seconds() -> None:
    with pytest.raises(ValueError):
        Snooze(-1)
    assert Snooze(1.5).delay == timedelta(seconds=1.5)


# ---------------------------------------------------------------- the recorded error


def test_attempt_error_round_trips_through_json() -> None:
    job = replace(running_job(), attempt=2)
    record = attempt_error(job, boom(), now=NOW, worker="w9")
    assert type(record).from_json(record.to_json()) == record


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def test_an_exception_that_cannot_be_printed_still_gives_an_outcome() -> None:
    out = failed(running_job(attempt=1), UnprintableError(), retry=NO_JITTER, now=NOW, worker="w1")
    assert out.state == "available"
    assert out.error is not None and out.error.error == "UnprintableError"
