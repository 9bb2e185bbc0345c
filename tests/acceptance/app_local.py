"""An app with a local schedule (run by every worker process) and a clustered one, for the acceptance tests of
``finejobs worker``'s options and ``finejobs workers``."""

from __future__ import annotations

import finejobs

queue = finejobs.Queue()


@queue.job("touch")
def touch(payload: dict[str, object]) -> None:
    """Succeeds at once."""


@queue.job("refuse", retry=finejobs.Retry(max_attempts=1))
def refuse(payload: dict[str, object]) -> None:
    """Fails at once, never retried."""
    raise RuntimeError("refused")


_cache: dict[str, int] = {"entries": 3}


def expire_cache() -> None:
    """What a process keeps for itself: a local schedule clears it in every process."""
    _cache.clear()


queue.local_schedule("cache-expiry", expire_cache, finejobs.Every(seconds=0.3), description="per-process cache")
queue.schedule("hourly-touch", touch, finejobs.Every(hours=1))
