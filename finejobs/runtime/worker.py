"""The Worker: a producer that claims jobs, an executor that runs them, and small services around.

```
LISTEN/NOTIFY ─┐                       ┌─> thread pool (sync handlers)
jittered poll ─┴─> producer: claim ≤ free slots ─┤                         ─> completer: one UPDATE per batch
                                       └─> event loop (async handlers)
heartbeat (extends leases) · watchdog (timeouts) · maintenance (rescue, expire, prune)
```
No transaction is open while a handler runs: the claim commits first, the outcome is written later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import FrameType

from finejobs import outcomes
from finejobs.clock import Clock
from finejobs.errors import ConfigurationError, DatabaseUnavailable, FinejobsError
from finejobs.jobs import Job, JobState
from finejobs.limits import (
    DEFAULT_SCHEDULE_BATCH,
    MAX_CONCURRENCY,
    MAX_SCHEDULE_BATCH,
    MAX_WORKER_GRACE,
    MAX_WORKER_LEASE,
    MAX_WORKER_POLL,
    check_duration,
    check_int,
    log_safe,
)
from finejobs.queue import Queue
from finejobs.runtime.claiming import Claiming, PauseCache
from finejobs.runtime.executing import Executing, Running
from finejobs.runtime.handler_pool import HandlerPool
from finejobs.runtime.local_schedules import LocalSchedules
from finejobs.runtime.observers import Observers, WorkerObserver
from finejobs.runtime.scheduler import Scheduler
from finejobs.runtime.services import (
    REGISTRY_INTERVAL,
    Completer,
    Heartbeat,
    Listener,
    Maintenance,
    Registry,
    Watchdog,
    backoff_seconds,
    describe_running,
)
from finejobs.sharding import is_glob, validate_shard_pattern
from finejobs.store import JobStore, Outcome

log = logging.getLogger("finejobs.worker")

DEFAULT_RETENTION: dict[JobState, timedelta] = {
    JobState.SUCCEEDED: timedelta(days=1),
    JobState.FAILED: timedelta(days=7),
    JobState.EXPIRED: timedelta(days=7),
    JobState.CANCELLED: timedelta(days=7),
}


SERVICE_STOP_TIMEOUT = 10.0  # seconds a stopping worker waits for its services' last passes, all together


class WorkerCrashed(FinejobsError):
    """A worker service died; the worker stopped."""


class Worker(Claiming, Executing):
    """Claims and runs jobs of its queue's kinds from the chosen shards (all shards by default).

    ``shards`` are names or globs (``district-*``): a glob is matched against the shards that exist (those
    with a partition or waiting jobs) and matched again as shards appear. A worker works one database:
    ``database`` names it in the queue's shard map (default: the one holding its shards); it serves only
    the shards the map places there. ``queue.worker()`` makes one Worker per database when needed.
    ``observers`` (finejobs.WorkerObserver, e.g. finejobs.metrics.WorkerMetrics) are told of its claims,
    outcomes and schedule ticks. ``local_schedules=False``: this worker does not run the queue's local
    schedules (``queue.schedule(..., local=True)``; a WorkerGroup runs them in its first worker only).
    """

    def __init__(
        self,
        queue: Queue,
        *,
        shards: Sequence[str] | None = None,
        database: str | None = None,
        concurrency: int = 10,
        poll_interval: float = 1.0,
        lease: timedelta = timedelta(seconds=30),
        heartbeat_interval: float | None = None,
        shutdown_grace: float = 30.0,
        flush_interval: float = 0.005,
        maintenance_interval: float = 2.0,
        retention: dict[JobState, timedelta] | None = None,
        claim_batch: int = 100,
        claim_cooldown: float = 0.005,
        shard_refresh_interval: float = 5.0,
        clock: Clock | None = None,
        worker_id: str | None = None,
        listen: bool = True,
        schedule_interval: float = 1.0,
        schedule_batch: int = DEFAULT_SCHEDULE_BATCH,
        run_scheduler: bool = True,
        register: bool = True,
        observers: Sequence[WorkerObserver] = (),
        local_schedules: bool = True,
    ) -> None:
        check_int("concurrency", concurrency, 1, MAX_CONCURRENCY)
        check_int("claim_batch", claim_batch, 1, MAX_CONCURRENCY)
        check_int("schedule_batch", schedule_batch, 1, MAX_SCHEDULE_BATCH)
        lease = check_duration("lease", lease, most=MAX_WORKER_LEASE) or lease
        check_duration("poll_interval", poll_interval, most=MAX_WORKER_POLL)
        for name, value, most in (("heartbeat_interval", heartbeat_interval, MAX_WORKER_POLL),
                                  ("flush_interval", flush_interval, MAX_WORKER_POLL),
                                  ("maintenance_interval", maintenance_interval, MAX_WORKER_POLL),
                                  ("schedule_interval", schedule_interval, MAX_WORKER_POLL),
                                  ("shard_refresh_interval", shard_refresh_interval, MAX_WORKER_POLL),
                                  ("claim_cooldown", claim_cooldown, MAX_WORKER_POLL)):
            check_duration(name, value, strict=False, most=most)  # 0: every round
        check_duration("shutdown_grace", shutdown_grace, strict=False, most=MAX_WORKER_GRACE)
        for state, keep in (retention or {}).items():
            if JobState(state) not in DEFAULT_RETENTION:
                raise ConfigurationError(f"retention applies to the final states ({', '.join(DEFAULT_RETENTION)}), "
                                         f"not {JobState(state).value}")
            check_duration(f"retention of {JobState(state).value}", keep)
        self.queue = queue
        if isinstance(shards, str):
            raise TypeError("shards must be a list of shard names or globs, not a single string")
        self.shards = [validate_shard_pattern(s) for s in shards] if shards else None
        self._globs = self.shards is not None and any(is_glob(s) for s in self.shards)
        self.database = database if database is not None else self._database_of(self.shards)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease = lease
        self.shutdown_grace = shutdown_grace
        self.claim_batch = claim_batch
        self.claim_cooldown = claim_cooldown
        self._refill_at = max(1, min(claim_batch, concurrency) // 2)
        self.shard_refresh_interval = shard_refresh_interval
        self._pending_shards: list[str] | None = None
        self._pending_shards_at = 0.0
        self._hinted: set[str] = set()
        self._hint_lock = threading.Lock()
        self._rotation = 0
        self.error: BaseException | None = None  # what ended run() in start()'s thread, if anything
        self._last_round_claimed = False  # an empty round makes a worker serving every shard look again
        self.clock: Clock = clock or queue.clock
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.completer = Completer(self, flush_interval)
        self.heartbeat = Heartbeat(self, heartbeat_interval or max(0.05, lease.total_seconds() / 3))
        self.watchdog = Watchdog(self, 0.1)
        self.maintenance = Maintenance(self, maintenance_interval, dict(retention or DEFAULT_RETENTION))
        self.listener = Listener(self, self._notified) if listen else None
        self.scheduler = Scheduler(self, schedule_interval, schedule_batch) if run_scheduler else None
        self.registry = Registry(self, REGISTRY_INTERVAL) if register else None
        self.local = LocalSchedules(self) if local_schedules else None  # queue.schedule(..., local=True)
        self.pauses = PauseCache()
        self.observers = Observers(observers)  # told of claims, outcomes, schedule ticks (finejobs.metrics)
        self.started_at: datetime | None = None
        self._running: dict[int, Running] = {}
        self._held: dict[int, int] = {}  # job id -> attempt, until its outcome is written
        self._state_lock = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._fatal: tuple[str, BaseException] | None = None
        self._pool: HandlerPool[Running] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the async handlers running on it
        self._loop_thread: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self.stats = {"claimed": 0, "succeeded": 0, "retried": 0, "failed": 0, "expired": 0,
                      "cancelled": 0, "snoozed": 0, "discarded": 0}

    # ---------------------------------------------------------------- public control

    @property
    def store(self) -> JobStore:
        return self.queue.store_of(self.database)

    def _database_of(self, shards: list[str] | None) -> str:
        databases = self.queue.shard_map.databases_for(shards)
        if len(databases) > 1:
            raise ConfigurationError(
                f"the shards {', '.join(shards) if shards else '(all)'} live in several databases "
                f"({', '.join(databases)}): pass database=..., or use queue.worker(), which runs one worker "
                "per database"
            )
        return databases[0]

    def owns(self, shard: str) -> bool:
        """Whether the shard map places ``shard`` in this worker's database."""
        shard_map = self.queue.shard_map
        return len(shard_map.names) == 1 or shard_map.owns(self.database, shard)

    def maintenance_shards(self) -> list[str] | None:
        """The shards maintenance covers: None (every shard, one statement each) for a worker serving all,
        else the shards it serves (one statement per shard, each touching that shard's partition only)."""
        return None if self.shards is None else self._shards_to_claim()

    @property
    def kinds(self) -> list[str]:
        return sorted(self.queue.kinds)

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Work until stopped (SIGTERM/SIGINT, or ``stop()``). Raises WorkerCrashed if a service died."""
        if not self.queue.kinds and not (self.local is not None and self.queue.local_schedules):
            raise FinejobsError("the queue has no job kinds and no local schedules to run: declare some with "
                                "@queue.job(...) or queue.local_schedule(...)")
        self.store.check_schema()
        if self.scheduler is not None:
            self.scheduler.declare()  # the schedules declared in code: upserted at start
        if install_signal_handlers:
            self._install_signal_handlers()
        self._start_services()
        log.info("worker %s started: database=%s kinds=%s shards=%s concurrency=%d", self.worker_id, self.database,
                 ",".join(self.kinds) or "(none: local schedules only)", ",".join(self.shards) if self.shards else "*",
                 self.concurrency)
        try:
            self._produce()
        finally:
            self._shutdown()
            self._stopped.set()
        if self._fatal is not None:
            name, exc = self._fatal
            raise WorkerCrashed(f"worker service {name!r} died: {type(exc).__name__}: {exc}") from exc

    def observe(self, observer: WorkerObserver) -> Worker:
        """Tell ``observer`` of this worker's events from now on (see finejobs.runtime.observers)."""
        self.observers.add(observer)
        return self

    def start(self) -> Worker:
        """Run in a background thread (for tests and embedding); ``stop()`` ends it."""
        self._thread = threading.Thread(target=self._run_in_thread, name="finejobs-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Ask the worker to stop: no new claims, running handlers get the shutdown grace."""
        self._stopping.set()
        self._wake.set()
        with self._state_lock:
            self._state_lock.notify_all()
        if wait and self._thread is not None:
            self._thread.join(timeout)

    def ended(self) -> bool:
        """True once a worker started with ``start()`` has stopped (by ``stop()`` or on an error)."""
        return self._thread is not None and not self._thread.is_alive()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_in_thread(self) -> None:
        try:
            self.run(install_signal_handlers=False)
        except Exception as exc:
            self.error = exc
            log.exception("worker stopped with an error")

    # ---------------------------------------------------------------- for tests: one pass inline

    def work_once(self) -> list[Job]:
        """Claim what is due now, run it in this thread, write the outcomes; returns the jobs claimed.

        Uses the same claim, handler and completion code as ``run()``, without threads, so tests can
        drive a worker step by step with an injected clock.
        """
        if self.shards is None or self._globs:
            self._pending_shards = None  # "what is due now": look at every shard afresh
        self.pauses.invalidate()  # ... and at the control table as it is now
        jobs = self._claim(self.concurrency)
        for job in jobs:
            run = self._launch_record(job)
            if run is None:
                continue
            if run.kind.is_async:
                asyncio.run(self._execute_async(run))
            else:
                self._execute(run)
        self.completer.run_once(self.clock())
        return jobs

    # ---------------------------------------------------------------- the producer

    def _produce(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self._free_slots()
            if free == 0:
                with self._state_lock:
                    self._state_lock.wait_for(lambda: self._stopping.is_set() or self._free_slots() > 0,
                                              timeout=self.poll_interval)
                continue
            self._wake.clear()
            limit = min(free, self.claim_batch)
            try:
                jobs = self._claim(limit)
                failures = 0
            except DatabaseUnavailable as exc:
                failures += 1
                wait = backoff_seconds(failures)
                log.warning("producer: %s; retrying in %.1fs", exc, wait)
                self._stopping.wait(wait)
                continue
            self._launch(jobs)
            if len(jobs) < limit:
                self._wake.wait(self.poll_interval * random.uniform(0.8, 1.2))
            else:
                # More is waiting. Let slots free up a little so the next claim is a batch, not one job.
                with self._state_lock:
                    self._state_lock.wait_for(
                        lambda: self._stopping.is_set() or self._free_slots() >= self._refill_at,
                        timeout=self.claim_cooldown)

    def in_flight(self) -> int:
        """How many jobs this worker holds now (claimed, running or with an outcome not yet written)."""
        with self._state_lock:
            return len(self._held)

    def _free_slots(self) -> int:
        return self.concurrency - len(self._running)

    # ---------------------------------------------------------------- called by the services

    def held(self) -> dict[int, int]:
        with self._state_lock:
            return dict(self._held)

    def lease_lost(self, job_id: int, attempt: int) -> None:
        with self._state_lock:
            if self._held.get(job_id) == attempt:
                del self._held[job_id]
            run = self._running.get(job_id)
        if run is not None and run.job.attempt == attempt:
            log.warning("job %d: lease lost (rescued or cancelled meanwhile); its outcome will be ignored", job_id)
            run.context.cancelled.set()

    def enforce_timeouts(self, now_monotonic: float) -> list[int]:
        with self._state_lock:
            runs = list(self._running.values())
        timed_out = []
        for run in runs:
            timeout = run.kind.timeout
            if timeout is not None and not run.settled and now_monotonic - run.started > timeout.total_seconds():
                run.context.cancelled.set()
                self._settle_error(run, outcomes.HandlerTimeout(timeout))
                timed_out.append(run.job.id)
        return timed_out

    def outcome_written(self, outcome: Outcome, job: Job, duration: float, error: BaseException | None, *,
                        applied: bool) -> None:
        with self._state_lock:
            if self._held.get(job.id) == job.attempt:  # a later claim of the same job keeps its lease
                del self._held[job.id]
        label = outcomes.label(outcome)
        if not applied:
            self.stats["discarded"] += 1
            if self.observers:
                self.observers.job_finished(self, job, "discarded", duration)
            log.warning("job %d %s: outcome %s discarded: the job is no longer held by this worker",
                        job.id, job.kind, label)
            return
        self.stats[label] += 1
        if self.observers:
            self.observers.job_finished(self, job, label, duration)
        detail = f" error={outcomes.describe(error)}" if error is not None and label != "snoozed" else ""
        retry = f" next_run_at={outcome.run_at.isoformat()}" if label == "retried" and outcome.run_at else ""
        level = logging.INFO if label in ("succeeded", "snoozed") else logging.WARNING
        log.log(level, "job %d %s shard=%s attempt=%d/%d %s in %.1fms%s%s", job.id, log_safe(job.kind), job.shard,
                job.attempt, job.max_attempts, label, duration * 1000, retry, detail)

    def service_died(self, name: str, exc: BaseException) -> None:
        log.critical("worker service %r died: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
        if self._fatal is None:
            self._fatal = (name, exc)
        self.stop(wait=False)

    # ---------------------------------------------------------------- lifecycle

    def _start_services(self) -> None:
        self._pool = HandlerPool(self.concurrency, self._execute, name="finejobs-handler")
        if any(k.is_async for k in self.queue.kinds.values()):
            self._loop = asyncio.new_event_loop()
            loop = self._loop
            self._loop_thread = threading.Thread(target=loop.run_forever, name="finejobs-asyncio", daemon=True)
            self._loop_thread.start()
        services = [self.completer, self.heartbeat, self.watchdog, self.maintenance]
        if self.listener is not None:
            services.append(self.listener)
        if self.scheduler is not None:
            services.append(self.scheduler)
        if self.registry is not None:
            services.append(self.registry)
        if self.local is not None and self.queue.local_schedules:
            services.append(self.local)
        self.started_at = self.clock()
        if self.local is not None and self.local in services:
            self.local.arm(self.started_at)  # so the registry's first row lists them
        for service in services:
            service.start()
        if self.observers:
            self.observers.worker_started(self)

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.shutdown_grace
        with self._state_lock:
            if self._running:
                log.info("stopping: waiting up to %.1fs for %d running jobs", self.shutdown_grace,
                         len(self._running))
            self._state_lock.wait_for(lambda: not self._running or self._fatal is not None,
                                      timeout=max(0.0, deadline - time.monotonic()))
            if self._pool is not None:
                self._pool.shutdown()  # a job not started by now never starts: it is given back below
            left = [r for r in self._running.values() if not r.settled]
        if left:
            self._release(left)
        services = [s for s in (self.heartbeat, self.watchdog, self.maintenance, self.listener, self.scheduler,
                                 self.local, self.registry) if s is not None]
        for service in services[1:]:  # all at once: each ends its current pass meanwhile
            service.request_stop()
        self.completer.stop()  # the heartbeat keeps the leases while the last outcomes are written
        self.heartbeat.request_stop()
        joined = time.monotonic() + SERVICE_STOP_TIMEOUT
        for service in services:
            service.join(joined - time.monotonic())
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        log.info("worker %s stopped: %s", self.worker_id,
                 " ".join(f"{k}={v}" for k, v in self.stats.items()))
        if self.observers:
            self.observers.worker_stopped(self)

    def _release(self, runs: list[Running]) -> None:
        """Give back jobs whose handlers outlived the grace period; the attempt counts, as a lost lease."""
        for run in runs:
            with run.lock:
                run.settled = True
        log.warning("stopping: giving up %d jobs still running after the grace period: %s", len(runs),
                    describe_running(runs))
        try:
            released = self.store.job_release(
                owner=self.worker_id, ids=[r.job.id for r in runs], now=self.clock(),
                error="WorkerShutdown", message="the worker stopped before the handler finished",
            )
        except DatabaseUnavailable as exc:
            log.error("could not release jobs (%s); their leases will bring them back", exc)
            return
        for job_id, state in released.items():
            log.warning("job %d: released at shutdown, now %s", job_id, state.value)

    def _install_signal_handlers(self) -> None:
        install_stop_signals(stopping=self._stopping, stop=lambda: self.stop(wait=False))


def install_stop_signals(*, stopping: threading.Event, stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT call ``stop`` (a graceful stop); a second signal while stopping exits at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            log.warning("second %s: exiting at once; leases will bring running jobs back",
                        signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: stopping (send it again to exit at once)", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
