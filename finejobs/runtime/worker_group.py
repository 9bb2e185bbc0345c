"""WorkerGroup: one Worker per database of the shard map, run and stopped together.

A worker connects only to the databases of its shards. When those shards live in several databases
(``finejobs worker --shard 'district-*'`` with districts 1-10 on database A and 11-20 on B), the queue
makes a WorkerGroup: one Worker per database, each with its own producer, pool, services and
``concurrency`` slots, and each serving only the shards the map places in its database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from finejobs.runtime.observers import WorkerObserver
from finejobs.runtime.worker import Worker, WorkerCrashed, install_stop_signals

if TYPE_CHECKING:
    from finejobs.queue import Queue

log = logging.getLogger("finejobs.worker")


class WorkerGroup:
    """Workers of one queue, one per database, started and stopped as one."""

    def __init__(self, queue: Queue, *, databases: Sequence[str], worker_id: str | None = None,
                 **options: Any) -> None:
        self.queue = queue
        local = options.pop("local_schedules", True)  # local schedules run once per process: in the first worker
        self.workers = [
            Worker(queue, database=name, worker_id=f"{worker_id}:{name}" if worker_id else None,
                   local_schedules=local and i == 0, **options)
            for i, name in enumerate(databases)
        ]
        self._stopping = threading.Event()

    @property
    def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for worker in self.workers:
            for key, value in worker.stats.items():
                total[key] = total.get(key, 0) + value
        return total

    def observe(self, observer: WorkerObserver) -> WorkerGroup:
        """Tell ``observer`` of every worker's events (``observers=[...]`` at creation does the same)."""
        for worker in self.workers:
            worker.observe(observer)
        return self

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run every worker until stopped; if one stops on an error, stop the others and raise it."""
        if install_signal_handlers:
            install_stop_signals(stopping=self._stopping, stop=self._stopping.set)
        for worker in self.workers:
            worker.start()
        try:
            while not self._stopping.is_set():
                if any(w.ended() for w in self.workers):
                    break  # one ended on its own: a service died (or it was stopped directly)
                self._stopping.wait(0.2)
        finally:
            for worker in self.workers:
                worker.stop(wait=False)
            for worker in self.workers:
                worker.stop(wait=True)
        errors = [(w.database, w.error) for w in self.workers if w.error is not None]
        if errors:
            database, error = errors[0]
            raise WorkerCrashed(f"the worker of database {database!r} stopped: {error}") from error

    def start(self) -> WorkerGroup:
        """Start every worker in a background thread (for tests and embedding)."""
        for worker in self.workers:
            worker.start()
        return self

    def stop(self, *, wait: bool = True, timeout: float | None = None) -> None:
        self._stopping.set()
        for worker in self.workers:
            worker.stop(wait=False)
        if wait:
            for worker in self.workers:
                worker.stop(wait=True, timeout=timeout)

    def work_once(self) -> list[Any]:
        """One inline pass of every worker (for tests); returns the jobs claimed."""
        return [job for worker in self.workers for job in worker.work_once()]

    def __enter__(self) -> WorkerGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
