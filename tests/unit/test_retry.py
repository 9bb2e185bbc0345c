"""Retry: validation, exponential backoff with jitter, which errors retry, and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finejobs import Retry

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
S = timedelta(seconds=1)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("max_attempts", [0, -1, -100])
def test_max_attempts_below_one_is_refused(max_attempts: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Retry(max_attempts=max_attempts)


@pytest.mark.parametrize("max_attempts", [1.5, "3", None])
def test_max_attempts_must_be_an_integer(max_attempts: object) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Retry(max_attempts=max_attempts)  # type: ignore[arg-type]


def test_max_attempts_one_is_allowed_and_never_retries() -> None:
    policy = Retry(max_attempts=1)
    assert policy.next_retry_at(attempt=1, error=ValueError(), now=NOW, expires_at=None) is None


def test_negative_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Retry(backoff=-S)


def test_negative_max_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Retry(backoff=timedelta(0), max_backoff=-S)


def test_max_backoff_below_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="max_backoff"):
        Retry(backoff=10 * S, max_backoff=5 * S)


def test_negative_jitter_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Retry(jitter=-S)


def test_on_with_a_non_exception_type_is_refused_at_construction() -> None:
    with pytest.raises((TypeError, ValueError)):
        Retry(on=("ValueError",))  # type: ignore[arg-type]


# ---------------------------------------------------------------- delays


def test_delays_double_without_jitter() -> None:
    policy = Retry(backoff=10 * S, max_backoff=timedelta(hours=1), jitter=timedelta(0))
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [10 * S, 20 * S, 40 * S, 80 * S, 160 * S]


def test_delays_cap_at_max_backoff() -> None:
    policy = Retry(backoff=10 * S, max_backoff=60 * S, jitter=timedelta(0))
    assert [policy.delay(n) for n in (3, 4, 5, 30, 1000)] == [40 * S, 60 * S, 60 * S, 60 * S, 60 * S]


def test_jitter_never_pushes_past_max_backoff() -> None:
    policy = Retry(backoff=10 * S, max_backoff=15 * S, jitter=100 * S)
    assert all(10 * S <= policy.delay(1) <= 15 * S for _ in range(200))


def test_jitter_stays_within_bounds() -> None:
    policy = Retry(backoff=10 * S, max_backoff=timedelta(hours=1), jitter=3 * S)
    delays = [policy.delay(2) for _ in range(300)]
    assert all(20 * S <= d <= 23 * S for d in delays)
    assert len(set(delays)) > 1, "jitter must spread the delays"


def test_default_jitter_is_one_backoff() -> None:
    policy = Retry(backoff=10 * S, max_backoff=timedelta(hours=1))
    delays = [policy.delay(1) for _ in range(300)]
    assert all(10 * S <= d <= 20 * S for d in delays)
    assert max(delays) > 15 * S, "with a default jitter of one backoff, some delays exceed 1.5 backoffs"


def test_attempt_zero_is_treated_as_first() -> None:
    policy = Retry(backoff=10 * S, jitter=timedelta(0))
    assert policy.delay(0) == policy.delay(1) == 10 * S


def test_zero_backoff_retries_at_once() -> None:
    policy = Retry(backoff=timedelta(0), max_backoff=timedelta(0), jitter=timedelta(0))
    assert policy.next_retry_at(attempt=1, error=ValueError(), now=NOW, expires_at=None) == NOW


def test_huge_attempt_numbers_give_max_backoff() -> None:
    policy = Retry(backoff=10 * S, max_backoff=60 * S, jitter=timedelta(0))
    assert policy.delay(5000) == 60 * S


# ---------------------------------------------------------------- which errors retry


def test_every_exception_retries_by_default() -> None:
    policy = Retry()
    assert policy.retries(ValueError()) and policy.retries(RuntimeError()) and policy.retries(KeyError())


def test_on_filters_exception_types() -> None:
    policy = Retry(on=(ConnectionError, TimeoutError))
    assert policy.retries(ConnectionError())
    assert policy.retries(ConnectionResetError())  # subclasses count
    assert policy.retries(TimeoutError())
    assert not policy.retries(ValueError())


def test_error_not_in_on_gives_up() -> None:
    policy = Retry(on=(ConnectionError,))
    assert policy.next_retry_at(attempt=1, error=ValueError(), now=NOW, expires_at=None) is None
    assert policy.next_retry_at(attempt=1, error=ConnectionError(), now=NOW, expires_at=None) is not None


@pytest.mark.parametrize("error", [SystemExit(1), KeyboardInterrupt(), GeneratorExit()])
def test_base_exceptions_are_never_retried(error: BaseException) -> None:
    assert not Retry().retries(error)
    assert not Retry(on=(BaseException,)).retries(error)
    assert Retry().next_retry_at(attempt=1, error=error, now=NOW, expires_at=None) is None


# ---------------------------------------------------------------- next_retry_at


def test_next_retry_at_is_now_plus_delay() -> None:
    policy = Retry(backoff=10 * S, jitter=timedelta(0))
    assert policy.next_retry_at(attempt=2, error=ValueError(), now=NOW, expires_at=None) == NOW + 20 * S


def test_gives_up_when_attempts_are_exhausted() -> None:
    policy = Retry(max_attempts=3)
    assert policy.next_retry_at(attempt=2, error=ValueError(), now=NOW, expires_at=None) is not None
    assert policy.next_retry_at(attempt=3, error=ValueError(), now=NOW, expires_at=None) is None
    assert policy.next_retry_at(attempt=4, error=ValueError(), now=NOW, expires_at=None) is None


def test_max_attempts_argument_overrides_the_policy() -> None:
    policy = Retry(max_attempts=3)
    assert policy.next_retry_at(attempt=3, error=ValueError(), now=NOW, expires_at=None, max_attempts=5)
    assert policy.next_retry_at(attempt=1, error=ValueError(), now=NOW, expires_at=None, max_attempts=1) is None


def test_never_retries_at_or_past_expires_at() -> None:
    policy = Retry(backoff=10 * S, jitter=timedelta(0))
    assert policy.next_retry_at(attempt=1, error=ValueError(), now=NOW, expires_at=NOW + 10 * S) is None
    assert policy.next_retry_at(attempt=1, error=ValueError(), now=NOW, expires_at=NOW + 5 * S) is None
    assert policy.next_retry_at(
        attempt=1, error=ValueError(), now=NOW, expires_at=NOW + 11 * S
    ) == NOW + 10 * S


# ---------------------------------------------------------------- properties

seconds = st.integers(min_value=0, max_value=7 * 24 * 3600)


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=200),
    backoff=seconds,
    extra=seconds,
    jitter=st.integers(min_value=0, max_value=24 * 3600),
)
def test_delay_is_within_bounds(attempt: int, backoff: int, extra: int, jitter: int) -> None:
    max_backoff = backoff + extra
    policy = Retry(backoff=backoff * S, max_backoff=max_backoff * S, jitter=jitter * S)
    base = min(backoff * 2 ** (attempt - 1), max_backoff)
    top = min(backoff * 2 ** (attempt - 1) + jitter, max_backoff)
    delay = policy.delay(attempt).total_seconds()
    # timedelta keeps microseconds: allow for that rounding only.
    assert base - 1e-6 <= delay <= top + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=50),
    max_attempts=st.integers(min_value=1, max_value=50),
    backoff=seconds,
    extra=seconds,
    expires_in=st.one_of(st.none(), st.integers(min_value=1, max_value=30 * 24 * 3600)),
)
def test_next_retry_at_is_never_at_or_past_expiry(
    attempt: int, max_attempts: int, backoff: int, extra: int, expires_in: int | None
) -> None:
    policy = Retry(max_attempts=max_attempts, backoff=backoff * S, max_backoff=(backoff + extra) * S)
    expires_at = None if expires_in is None else NOW + expires_in * S
    at = policy.next_retry_at(attempt=attempt, error=RuntimeError(), now=NOW, expires_at=expires_at)
    if attempt >= max_attempts:
        assert at is None
    if at is not None:
        assert at >= NOW
        assert expires_at is None or at < expires_at
