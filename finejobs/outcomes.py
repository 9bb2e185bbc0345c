"""From "what the handler did" to the Outcome the store writes. Pure functions: no I/O."""

from __future__ import annotations

import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from finejobs.errors import Cancel, Snooze
from finejobs.jobs import AttemptError, Job, JobState, Outcome
from finejobs.limits import (
    MAX_MESSAGE_CHARS,
    MAX_RETURN_VALUE_BYTES,
    MAX_TRACEBACK_CHARS,
    cap,
    clamp_after,
    log_safe,
    storable_text,
)
from finejobs.payloads import encode_value
from finejobs.retry import Retry


class _IdleType:
    """The type of ``finejobs.Idle``: a handler returns it to say it found nothing to do.

    The job still succeeds; its ``result`` is recorded as ``idle``, and an adaptive schedule then waits
    its ``on_idle`` delay before the next run. ``return finejobs.Idle(value)`` says the same and keeps
    ``value`` as the job's ``return_value`` (e.g. a service's message), as any other return value is kept.
    """

    def __call__(self, value: object) -> IdleWith:
        return IdleWith(value)

    _instance: _IdleType | None = None

    def __new__(cls) -> _IdleType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "finejobs.Idle"

    def __reduce__(self) -> str:
        return "Idle"


Idle = _IdleType()


@dataclass(frozen=True)
class IdleWith:
    """``finejobs.Idle(value)``: nothing to do, and ``value`` to keep as the job's return value."""

    value: object


def result_of(value: object) -> str | None:
    """What a handler's return value says, as recorded on the job: 'idle' for finejobs.Idle (with a value or
    without)."""
    return "idle" if value is Idle or value is _IdleType or isinstance(value, IdleWith) else None


def label(outcome: Outcome) -> str:
    """How an outcome is counted, logged and traced: succeeded, retried, snoozed (a retry or a snooze go back
    to ``available``; a snooze does not count the attempt), failed, expired or cancelled."""
    if outcome.state == JobState.AVAILABLE.value:
        return "snoozed" if outcome.uncount else "retried"
    return outcome.state


def is_timeout(error: BaseException) -> bool:
    """A TimeoutError (HandlerTimeout included), or an error whose class or a base is named like a timeout
    (httpx.TimeoutException, requests.Timeout): adaptive schedules use ``on_timeout`` after those."""
    if isinstance(error, TimeoutError):
        return True
    return any("timeout" in cls.__name__.lower() for cls in type(error).__mro__)


class Unrunnable(Exception):
    """A claimed job that cannot be run at all (its row could not be decoded, its payload no longer fits the
    kind's model, no handler here): it fails at once, without retries."""


class HandlerTimeout(TimeoutError):
    """A handler ran past its kind's ``timeout``."""

    def __init__(self, timeout: timedelta) -> None:
        super().__init__(f"handler ran past its timeout of {timeout.total_seconds():g}s")


def attempt_error(job: Job, error: BaseException, *, now: datetime, worker: str) -> AttemptError:
    """The record of a failed attempt: message and traceback capped (MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS)
    and storable whatever the error's text holds."""
    return AttemptError(
        attempt=job.attempt,
        at=now,
        error=_safe(lambda e: type(e).__qualname__, error)[:200],
        message=cap(_safe(str, error), MAX_MESSAGE_CHARS),
        traceback=cap(_safe(lambda e: "".join(tb.format_exception(e)), error), MAX_TRACEBACK_CHARS, keep_tail=True),
        worker=worker,
    )


def _safe(render: Callable[[BaseException], str], error: BaseException) -> str:
    """Render an error for the record even when its __str__ raises (SystemExit included) or returns a
    non-str; PostgreSQL cannot store NUL characters or lone surrogates, so they are written escaped."""
    try:
        text = render(error)
        if not isinstance(text, str):
            raise TypeError("not a str")
    except BaseException as exc:
        text = f"<{type(error).__qualname__} could not be rendered: {type(exc).__name__}>"
    return storable_text(text)


def describe(error: BaseException) -> str:
    """``Type: message`` for a log line, safe for any exception: one line, control characters escaped,
    capped."""
    return log_safe(f"{type(error).__name__}: {_safe(str, error)}")


def _outcome(job: Job, state: str, **fields: Any) -> Outcome:
    """An outcome for this claim of ``job``, fenced by its claim count."""
    return Outcome(job.id, job.attempt, state, claims=job.claims, shard=job.shard, group_id=job.group_id, **fields)


def expired_unstarted(job: Job, *, now: datetime) -> Outcome:
    """A claimed job whose expires_at had passed: never started, so the attempt does not count."""
    error = AttemptError(attempt=job.attempt - 1, at=now, error="Expired", message="not started before expires_at")
    return _outcome(job, JobState.EXPIRED.value, finished_at=now, error=error, uncount=1)


def succeeded(job: Job, *, now: datetime, result: object = None) -> Outcome:
    """The outcome of an attempt that returned ``result`` (finejobs.Idle is recorded as 'idle'; any other value
    but None is kept as the job's return_value when JSON can keep it: see return_json)."""
    return _outcome(job, JobState.SUCCEEDED.value, finished_at=now, result=result_of(result),
                    return_value=return_json(result))


def return_json(value: object) -> str | None:
    """A handler's return value as the JSON text to store; None for None and finejobs.Idle (nothing to keep:
    plain jobs cost nothing more) and for a value JSON cannot keep (finejobs.payloads' rules) or one over
    MAX_RETURN_VALUE_BYTES."""
    if value is None or value is Idle or value is _IdleType:
        return None
    if isinstance(value, IdleWith):
        return return_json(value.value)
    return encode_value(value, max_bytes=MAX_RETURN_VALUE_BYTES)


def unrunnable(job: Job, why: str, *, now: datetime, worker: str) -> Outcome:
    """A claimed job that cannot run (see Unrunnable): failed now, with the reason in its errors."""
    error = AttemptError(attempt=job.attempt, at=now, error="Unrunnable",
                         message=cap(storable_text(why), MAX_MESSAGE_CHARS), worker=worker)
    return _outcome(job, JobState.FAILED.value, finished_at=now, error=error)


def released(job: Job, *, now: datetime) -> Outcome:
    """A claimed job this worker never started: back to waiting, the attempt not counted."""
    return _outcome(job, JobState.AVAILABLE.value, run_at=now, uncount=1)


def failed(job: Job, error: BaseException, *, retry: Retry, now: datetime, worker: str) -> Outcome:
    """The outcome of an attempt that raised ``error`` (Cancel and Snooze included)."""
    if isinstance(error, Snooze):
        run_at = clamp_after(now, error.delay)  # at most MAX_DELAY (365 days) ahead
        if job.expires_at is not None and run_at >= job.expires_at:
            return _outcome(job, JobState.EXPIRED.value, finished_at=now,
                           error=attempt_error(job, error, now=now, worker=worker))
        return _outcome(job, JobState.AVAILABLE.value, run_at=run_at, uncount=1)
    record = attempt_error(job, error, now=now, worker=worker)
    label = "timeout" if is_timeout(error) else None
    if isinstance(error, Cancel):
        return _outcome(job, JobState.CANCELLED.value, finished_at=now, error=record)
    if isinstance(error, Unrunnable):
        return _outcome(job, JobState.FAILED.value, finished_at=now, error=record)
    retry_at = retry.next_retry_at(attempt=job.attempt, error=error, now=now, expires_at=job.expires_at,
                                   max_attempts=job.max_attempts)
    if retry_at is not None:
        return _outcome(job, JobState.AVAILABLE.value, run_at=retry_at, error=record,
                       result=label)
    out_of_time = (
        job.expires_at is not None
        and job.attempt < job.max_attempts
        and retry.retries(error)
    )
    final = JobState.EXPIRED if out_of_time else JobState.FAILED
    return _outcome(job, final.value, finished_at=now, error=record, result=label)
