"""Observers: what a running worker tells the code that watches it (finejobs.metrics' Prometheus counters,
or your own), without that code touching the hot path.

```python
class Counting(finejobs.WorkerObserver):          # override only the events you need
    def job_finished(self, worker, job, outcome, duration):
        ...

worker = queue.worker(observers=[Counting()])      # or worker.observe(Counting()) before it starts
```
Each event is a plain method call on the thread that saw it (the producer, the completer, the scheduler):
keep it quick and thread-safe. An observer that raises is logged (once per observer and event) and
ignored: watching a worker never stops it. A worker without observers pays one truth test per event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from finejobs.jobs import Job

if TYPE_CHECKING:
    from finejobs.runtime.worker import Worker

log = logging.getLogger("finejobs.worker")

OUTCOMES = ("succeeded", "retried", "snoozed", "failed", "expired", "cancelled", "discarded")


class WorkerObserver(Protocol):
    """The events of a running worker; every method has a default that does nothing (subclass and
    override some, or write a class with the same methods)."""

    def worker_started(self, worker: Worker) -> None:
        """The worker's services started (before its first claim)."""
        return None  # a body, so that subclasses need not override every event

    def worker_stopped(self, worker: Worker) -> None:
        """The worker stopped (its last outcomes written, or given up)."""
        return None

    def jobs_claimed(self, worker: Worker, jobs: Sequence[Job]) -> None:
        """A claim round took these jobs (never called for an empty round)."""
        return None

    def job_finished(self, worker: Worker, job: Job, outcome: str, duration: float) -> None:
        """An attempt's outcome was written (or dropped): ``outcome`` is one of OUTCOMES ("discarded": the
        job was no longer this worker's, e.g. rescued or cancelled meanwhile, and nothing was written);
        ``duration``: seconds from the claim to the outcome (0 for a job that never started)."""
        return None

    def schedule_fired(self, worker: Worker, schedule: str, fired: int, skipped: int) -> None:
        """This worker's scheduler fired ``schedule``: ``fired`` ticks made a job each, ``skipped`` ticks made
        none (the misfire policy coalesced or skipped them, or the overlap policy skipped a run)."""
        return None


class Observers:
    """The observers of one worker, each event sent to every one; errors are logged and swallowed."""

    def __init__(self, observers: Iterable[WorkerObserver] = ()) -> None:
        self._items: tuple[WorkerObserver, ...] = ()
        self._lock = threading.Lock()
        self._warned: set[tuple[int, str]] = set()
        for observer in observers:
            self.add(observer)

    def add(self, observer: WorkerObserver) -> None:
        if not any(callable(getattr(observer, name, None)) for name in _EVENTS):
            raise TypeError(f"an observer needs at least one of the methods {', '.join(_EVENTS)}; "
                            f"got {type(observer).__name__}")
        with self._lock:
            if not any(o is observer for o in self._items):
                self._items = (*self._items, observer)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def worker_started(self, worker: Worker) -> None:
        self._send("worker_started", worker)

    def worker_stopped(self, worker: Worker) -> None:
        self._send("worker_stopped", worker)

    def jobs_claimed(self, worker: Worker, jobs: Sequence[Job]) -> None:
        self._send("jobs_claimed", worker, jobs)

    def job_finished(self, worker: Worker, job: Job, outcome: str, duration: float) -> None:
        self._send("job_finished", worker, job, outcome, duration)

    def schedule_fired(self, worker: Worker, schedule: str, fired: int, skipped: int) -> None:
        self._send("schedule_fired", worker, schedule, fired, skipped)

    def _send(self, event: str, *args: object) -> None:
        for observer in self._items:
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception as exc:
                key = (id(observer), event)
                if key not in self._warned:
                    self._warned.add(key)
                    log.error("worker observer %s failed in %s (%s: %s); the worker works on (its further "
                              "failures there are not logged)", type(observer).__name__, event, type(exc).__name__, exc)


_EVENTS = ("worker_started", "worker_stopped", "jobs_claimed", "job_finished", "schedule_fired")
