"""The small services a Worker is made of, besides the producer and the executor.

Each service has ``run_once(now)`` (tests call it directly with an injected time) and runs it in a
loop on its own thread between ``start()`` and ``stop()``. A database outage makes a service log and
back off (tenacity's jittered exponential wait); any other exception is fatal: the service tells the
worker, which stops loudly.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import tenacity

from finejobs import pipeline_engine, pipelines
from finejobs._version import __version__
from finejobs.errors import DatabaseUnavailable
from finejobs.jobs import Job, JobState
from finejobs.store import MaintenanceResult, Notifications, Outcome

if TYPE_CHECKING:
    from finejobs.runtime.executing import Running
    from finejobs.runtime.worker import Worker

log = logging.getLogger("finejobs.worker")

_backoff = tenacity.wait_exponential_jitter(multiplier=0.2, max=10.0, jitter=0.5)


def backoff_seconds(failures: int) -> float:
    """How long to wait after ``failures`` consecutive database failures."""
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=lambda: None, args=(), kwargs={})
    state.attempt_number = max(1, failures)
    return float(_backoff(state))


class Service:
    """A loop on its own thread: ``run_once`` every ``interval`` seconds until stopped."""

    name = "service"

    def __init__(self, worker: Worker, interval: float) -> None:
        self.worker = worker
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime) -> Any:
        raise NotImplementedError

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"finejobs-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        self.join(timeout)

    def request_stop(self) -> None:
        """Ask the loop to end after its current pass (``join`` waits for it): a worker asks every service
        first and then joins them, so that their last passes overlap instead of adding up."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, timeout))

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.run_once(self.worker.clock())
                failures = 0
                wait = self.interval
            except DatabaseUnavailable as exc:
                failures += 1
                wait = backoff_seconds(failures)
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, wait)
            except Exception as exc:
                self.worker.service_died(self.name, exc)
                return
            self._stop.wait(wait)


@dataclass
class _Pending:
    outcome: Outcome
    job: Job
    duration: float
    error: BaseException | None


class Completer(Service):
    """Buffers outcomes and writes them in one statement every few milliseconds."""

    name = "completer"

    def __init__(self, worker: Worker, interval: float) -> None:
        super().__init__(worker, interval)
        self._buffer: list[_Pending] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def add(self, outcome: Outcome, job: Job, duration: float, error: BaseException | None) -> None:
        with self._lock:
            self._buffer.append(_Pending(outcome, job, duration, error))

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def run_once(self, now: datetime) -> int:
        """Flush the buffer; returns how many outcomes were written. On a database outage the buffer is kept."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                self._write(batch)
            except BaseException:
                with self._lock:
                    self._buffer[:0] = batch
                raise
            return len(batch)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            applied = self.worker.store.job_complete_many([p.outcome for p in batch], owner=self.worker.worker_id)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            # Not an outage: one outcome the database refuses must not take the others (or the worker) down.
            if len(batch) > 1:
                for item in batch:
                    self._write([item])
                return
            item = batch[0]
            log.error("job %d: could not write its outcome (%s: %s); its lease will bring it back",
                      item.job.id, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            applied = set()
        for item in batch:
            self.worker.outcome_written(item.outcome, item.job, item.duration, item.error,
                                        applied=item.outcome.job_id in applied)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        deadline = time.monotonic() + timeout
        failures = 0
        while self.pending():
            try:
                self.run_once(self.worker.clock())
            except DatabaseUnavailable as exc:
                failures += 1
                if time.monotonic() >= deadline:
                    log.error("completer: could not write %d outcomes at shutdown (%s); their leases will "
                              "bring the jobs back", self.pending(), exc)
                    return
                time.sleep(min(backoff_seconds(failures), max(0.0, deadline - time.monotonic())))


class Heartbeat(Service):
    """Extends the leases of the jobs this worker holds; notices leases it lost."""

    name = "heartbeat"

    def run_once(self, now: datetime) -> set[int]:
        held = self.worker.held()
        if not held:
            return set()
        kept = self.worker.store.job_heartbeat(owner=self.worker.worker_id, held=held,
                                               lease=self.worker.lease, now=now)
        lost = set(held) - kept
        for job_id in lost:
            self.worker.lease_lost(job_id, held[job_id])
        return lost


class Watchdog(Service):
    """Fails attempts whose handler ran past its timeout (no database access)."""

    name = "watchdog"

    def run_once(self, now: datetime) -> list[int]:
        return self.worker.enforce_timeouts(time.monotonic())


REGISTRY_INTERVAL = 5.0  # seconds between a worker's refreshes of its registry row
REGISTRY_FORGET = timedelta(hours=1)  # rows not refreshed for this long are deleted


class Registry(Service):
    """Keeps this worker's row in the worker registry (for people: ``finejobs workers``, the console) and
    forgets rows of workers long gone. Nothing depends on it for correctness: rescue works from leases."""

    name = "registry"

    def run_once(self, now: datetime) -> None:
        try:
            self._refresh(now)
        except DatabaseUnavailable:
            raise  # logged and retried with backoff by the loop
        except Exception as exc:  # e.g. no grant on finejobs_workers: the worker works on, unlisted
            if not self._warned:
                log.warning("registry: cannot keep this worker's row (%s); it works on, but is not listed", exc)
                self._warned = True

    _warned = False

    def _refresh(self, now: datetime) -> None:
        worker = self.worker
        worker.store.worker_upsert(values={
            "id": worker.worker_id, "host": socket.gethostname(), "pid": os.getpid(), "version": __version__,
            "database": worker.database, "shards": worker.shards, "kinds": worker.kinds,
            "concurrency": worker.concurrency, "started_at": worker.started_at or now, "seen_at": now,
            "in_flight": worker.in_flight(), "counters": dict(worker.stats), "info": self._info(),
        })
        worker.store.worker_prune(before=now - REGISTRY_FORGET)

    def _info(self) -> dict[str, Any]:
        local = self.worker.local
        if local is None or not self.worker.queue.local_schedules:
            return {}
        return {"local_schedules": local.snapshot()}

    def join(self, timeout: float) -> None:
        super().join(timeout)
        try:
            self.worker.store.worker_delete(worker_id=self.worker.worker_id)  # a clean stop: gone at once
        except Exception as exc:
            log.warning("registry: could not delete this worker's row (%s); it will show as gone", exc)


class Maintenance(Service):
    """Rescues lost leases, expires overdue jobs and prunes old finished ones, in the shards the worker
    serves (every shard for a worker serving all).

    Every worker runs it; an advisory lock per pass (and shard) lets one worker at a time do each.
    """

    name = "maintenance"

    def __init__(self, worker: Worker, interval: float, retention: dict[JobState, timedelta],
                 batch: int = 1000) -> None:
        super().__init__(worker, interval)
        self.retention = retention
        self.batch = batch

    def run_once(self, now: datetime) -> MaintenanceResult:
        store = self.worker.store
        shards = self.worker.maintenance_shards()
        if shards == []:
            return MaintenanceResult()
        rescued = store.job_rescue_expired_leases(now=now, limit=self.batch, shards=shards)
        for job_id, state in rescued.items():
            log.warning("job %d: lease expired, now %s", job_id, state.value)
        expired = store.job_expire_overdue(now=now, limit=self.batch, shards=shards)
        pruned = store.job_prune_finished(retention=self.retention, now=now, limit=self.batch, shards=shards)
        if pipelines.declared(self.worker.queue):  # chunks whose job ended without committing them
            pipeline_engine.reconcile_due(store, now=now)
        return MaintenanceResult(rescued=len(rescued), expired=expired, pruned=pruned)


class Listener(Service):
    """LISTENs for enqueue notifications and wakes the producer: a hint, the poll is the truth."""

    name = "listener"

    def __init__(self, worker: Worker, wake: Callable[[str], None]) -> None:
        super().__init__(worker, interval=0.0)  # run_once itself blocks while it waits for notifications
        self.listen_timeout = 0.5
        self.wake = wake
        self._notes: Notifications | None = None

    def run_once(self, now: datetime) -> int:
        if self._notes is None or self._notes.closed:
            self._notes = self.worker.store.listen()
            self.wake("*")  # anything enqueued while we were not listening
        found = self._notes.wait(self.listen_timeout, self.wake, stop=self._stop.is_set)
        # Keep the pauses fresh off the claim path (the producer reads them itself when they are a second old).
        self.worker.pauses.current(self.worker.store, max_age=self.worker.pauses.refresh / 2)
        return found

    def _loop(self) -> None:
        super()._loop()
        self._close()

    def _close(self) -> None:
        if self._notes is not None:
            try:
                self._notes.close()
            finally:
                self._notes = None


def describe_running(runs: list[Running]) -> str:
    return ", ".join(f"{r.job.kind}#{r.job.id}" for r in runs) or "none"
