"""From "what the handler did" to the Outcome the store writes. Pure functions: no I/O."""

from __future__ import annotations

import traceback as tb
from collections.abc import Callable
from datetime import datetime, timedelta

from finejobs.errors import Cancel, Snooze
from finejobs.jobs import AttemptError, Job, JobState
from finejobs.retry import Retry
from finejobs.store import Outcome


class HandlerTimeout(TimeoutError):
    """A handler ran past its kind's ``timeout``."""

    def __init__(self, timeout: timedelta) -> None:
        super().__init__(f"handler ran past its timeout of {timeout.total_seconds():g}s")


def attempt_error(job: Job, error: BaseException, *, now: datetime, worker: str) -> AttemptError:
    return AttemptError(
        attempt=job.attempt,
        at=now,
        error=type(error).__qualname__,
        message=_safe(str, error),
        traceback=_safe(lambda e: "".join(tb.format_exception(e)), error),
        worker=worker,
    )


def _safe(render: Callable[[BaseException], str], error: BaseException) -> str:
    """Render an error for the record even when its __str__ itself raises; PostgreSQL's jsonb cannot
    hold NUL characters, so they are written as the four characters ``\\x00``."""
    try:
        text = render(error)
    except Exception as exc:
        text = f"<{type(error).__qualname__} could not be rendered: {type(exc).__name__}>"
    return text.replace("\x00", "\\x00")


def describe(error: BaseException) -> str:
    """``Type: message`` for a log line, safe for any exception."""
    return f"{type(error).__name__}: {_safe(str, error)}"


def expired_unstarted(job: Job, *, now: datetime) -> Outcome:
    """A claimed job whose expires_at had passed: never started, so the attempt does not count."""
    error = AttemptError(attempt=job.attempt - 1, at=now, error="Expired", message="not started before expires_at")
    return Outcome(job.id, job.attempt, JobState.EXPIRED.value, finished_at=now, error=error, uncount=1)


def succeeded(job: Job, *, now: datetime) -> Outcome:
    return Outcome(job.id, job.attempt, JobState.SUCCEEDED.value, finished_at=now)


def released(job: Job, *, now: datetime) -> Outcome:
    """A claimed job this worker never started: back to waiting, the attempt not counted."""
    return Outcome(job.id, job.attempt, JobState.AVAILABLE.value, run_at=now, uncount=1)


def failed(job: Job, error: BaseException, *, retry: Retry, now: datetime, worker: str) -> Outcome:
    """The outcome of an attempt that raised ``error`` (Cancel and Snooze included)."""
    if isinstance(error, Snooze):
        run_at = now + error.delay
        if job.expires_at is not None and run_at >= job.expires_at:
            return Outcome(job.id, job.attempt, JobState.EXPIRED.value, finished_at=now,
                           error=attempt_error(job, error, now=now, worker=worker))
        return Outcome(job.id, job.attempt, JobState.AVAILABLE.value, run_at=run_at, uncount=1)
    record = attempt_error(job, error, now=now, worker=worker)
    if isinstance(error, Cancel):
        return Outcome(job.id, job.attempt, JobState.CANCELLED.value, finished_at=now, error=record)
    retry_at = retry.next_retry_at(attempt=job.attempt, error=error, now=now, expires_at=job.expires_at,
                                   max_attempts=job.max_attempts)
    if retry_at is not None:
        return Outcome(job.id, job.attempt, JobState.AVAILABLE.value, run_at=retry_at, error=record)
    out_of_time = (
        job.expires_at is not None
        and job.attempt < job.max_attempts
        and retry.retries(error)
    )
    final = JobState.EXPIRED if out_of_time else JobState.FAILED
    return Outcome(job.id, job.attempt, final.value, finished_at=now, error=record)
