"""Retry policy: when a failed attempt runs again, if at all.

Delays are computed with tenacity's ``wait_exponential_jitter`` (exponential backoff plus a random
jitter, capped at ``max_backoff``). The decision is written to the database as the job's new
``run_at``; nothing sleeps in process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import tenacity

from finejobs.errors import InvalidJobOptions
from finejobs.limits import MAX_ATTEMPTS, MAX_DELAY, check_int, clamp_after

_UNUSED: Callable[..., Any] = lambda: None  # noqa: E731 - tenacity wants a callable it never calls


@dataclass(frozen=True)
class Retry:
    """How a job kind retries.

    ``max_attempts`` counts every attempt, the first included (1 = never retry). ``backoff`` is the
    delay before the second attempt; each later delay doubles, plus up to ``jitter`` (default: one
    ``backoff``) of random spread, never more than ``max_backoff`` (nor ``finejobs.limits.MAX_DELAY``, 365
    days). ``on`` lists the exception types
    that are retried; ``None`` retries every ``Exception``. A retry that would start after the job's
    ``expires_at`` is not scheduled: the job expires instead.
    """

    max_attempts: int = 3
    backoff: timedelta = timedelta(seconds=10)
    max_backoff: timedelta = timedelta(minutes=10)
    on: tuple[type[BaseException], ...] | None = None
    jitter: timedelta | None = None
    _wait: tenacity.wait.wait_base = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("max_attempts", self.max_attempts, 1, MAX_ATTEMPTS)
        for name in ("backoff", "max_backoff", "jitter"):
            value = getattr(self, name)
            if not (value is None and name == "jitter") and not isinstance(value, timedelta):
                raise InvalidJobOptions(f"{name} must be a timedelta, got {type(value).__name__}")
        if self.backoff < timedelta(0) or self.max_backoff < timedelta(0):
            raise InvalidJobOptions("backoff and max_backoff must not be negative")
        if self.on is not None and not (
            isinstance(self.on, tuple) and all(isinstance(t, type) and issubclass(t, BaseException) for t in self.on)
        ):
            raise TypeError(f"on must be a tuple of exception types, got {self.on!r}")
        if self.max_backoff < self.backoff:
            raise InvalidJobOptions("max_backoff must be at least backoff")
        jitter = self.backoff if self.jitter is None else self.jitter
        if jitter < timedelta(0):
            raise InvalidJobOptions("jitter must not be negative")
        wait = tenacity.wait_exponential_jitter(
            multiplier=self.backoff.total_seconds(),
            max=self.max_backoff.total_seconds(),
            jitter=jitter.total_seconds(),
        )
        object.__setattr__(self, "_wait", wait)

    def retries(self, error: BaseException) -> bool:
        """True if this kind of error may be retried at all."""
        if not isinstance(error, Exception):
            return False
        return self.on is None or isinstance(error, self.on)

    def delay(self, attempt: int) -> timedelta:
        """The delay after failed attempt number ``attempt`` (1-based), at most MAX_DELAY."""
        state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=_UNUSED, args=(), kwargs={})
        state.attempt_number = max(1, attempt)
        try:
            seconds = float(self._wait(state))
        except OverflowError:
            seconds = MAX_DELAY.total_seconds()
        if not seconds <= MAX_DELAY.total_seconds():  # nan and inf too
            seconds = MAX_DELAY.total_seconds()
        return timedelta(seconds=max(0.0, seconds))

    def next_retry_at(
        self,
        *,
        attempt: int,
        error: BaseException,
        now: datetime,
        expires_at: datetime | None,
        max_attempts: int | None = None,
    ) -> datetime | None:
        """When to run again after attempt ``attempt`` failed with ``error``; None means give up.

        Give up when attempts are exhausted, the error is not retryable, or the retry would start
        at or after ``expires_at``. ``max_attempts`` overrides the policy's (a job row may allow more
        after an operator's retry).
        """
        limit = self.max_attempts if max_attempts is None else max_attempts
        if attempt >= limit or not self.retries(error):
            return None
        run_at = clamp_after(now, self.delay(attempt))
        if expires_at is not None and run_at >= expires_at:
            return None
        return run_at
