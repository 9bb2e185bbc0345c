"""Helpers for tests of apps that use finejobs (and for finejobs's own tests)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class FakeClock:
    """A clock that only moves when told: pass it as ``clock=`` to a Queue or Worker.

    >>> clock = FakeClock(datetime(2026, 11, 22, 8, tzinfo=timezone.utc))
    >>> clock.advance(timedelta(minutes=5))
    datetime.datetime(2026, 11, 22, 8, 5, tzinfo=datetime.timezone.utc)
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment
