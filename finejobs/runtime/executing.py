"""How a worker runs what it claimed: a thread pool for sync handlers, an event loop for async ones, each
outcome settled exactly once (a timeout's late result is dropped) and handed to the completer. Nothing a
handler does can strand its job: see ``_settle_error``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finejobs import outcomes, tracing
from finejobs.jobs import Job, JobContext
from finejobs.kinds import JobKind
from finejobs.limits import log_safe
from finejobs.queue import Queue
from finejobs.store import Outcome

if TYPE_CHECKING:
    from finejobs.clock import Clock
    from finejobs.runtime.handler_pool import HandlerPool
    from finejobs.runtime.services import Completer

log = logging.getLogger("finejobs.worker")


@dataclass
class Running:
    """A job this worker claimed, from claim until its outcome is settled."""

    job: Job
    kind: JobKind[Any, Any]
    context: JobContext
    started: float = field(default_factory=time.monotonic)
    settled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcome: Outcome | None = None  # the settled outcome, and the error it came from (for tracing)
    error: BaseException | None = None


class Executing:
    """The executor side of a Worker (a mixin: the Worker sets these attributes)."""

    queue: Queue
    worker_id: str
    clock: Clock
    completer: Completer
    _running: dict[int, Running]
    concurrency: int
    _refill_at: int
    _held: dict[int, int]
    _state_lock: threading.Condition
    _stopping: threading.Event
    _pool: HandlerPool[Running] | None
    _loop: asyncio.AbstractEventLoop | None
    _tasks: set[asyncio.Task[None]]

    def _launch_record(self, job: Job) -> Running | None:
        """Track a claimed job; None if it must not run (it expired meanwhile), its outcome then settled."""
        with self._state_lock:
            self._held[job.id] = job.attempt
        now = self.clock()
        if job.expires_at is not None and job.expires_at <= now:
            self.completer.add(outcomes.expired_unstarted(job, now=now), job, 0.0, None)
            return None
        kind = self.queue.kinds.get(job.kind)
        if job.defect is not None or kind is None:
            why = job.defect or f"no handler for kind {job.kind!r} in this worker"
            log.error("job %d: cannot be run, failing it: %s", job.id, log_safe(why))
            self.completer.add(outcomes.unrunnable(job, why, now=now, worker=self.worker_id), job, 0.0, None)
            return None
        run = Running(job=job, kind=kind, context=JobContext(job, self.worker_id))
        with self._state_lock:
            self._running[job.id] = run
        return run

    def _launch(self, jobs: list[Job]) -> None:
        """Start what was claimed: sync handlers on the pool, async ones as tasks on the event loop, all of a
        claim's in one hand-over to the loop (one wake-up of its thread, no Future per job)."""
        tasks: list[Running] = []
        for job in jobs:
            run = self._launch_record(job)
            if run is None:
                continue
            if self._stopping.is_set():
                self._settle(run, outcomes.released(job, now=self.clock()), None)
                self._finish(run)
            elif run.kind.is_async:
                tasks.append(run)
            else:
                assert self._pool is not None
                self._pool.submit(run)
        if tasks:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._start_tasks, tasks)

    def _start_tasks(self, runs: list[Running]) -> None:
        """On the event loop: a task per job, held until it ends (the loop keeps only weak references)."""
        assert self._loop is not None
        for run in runs:
            task = self._loop.create_task(self._execute_async(run))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _call_args(self, run: Running) -> tuple[Any, ...]:
        try:
            payload = run.kind.parse(run.job.payload)
        except Exception as exc:  # a stored payload the kind's model no longer accepts: retrying cannot help
            raise outcomes.Unrunnable(f"its payload does not fit the kind's model: {outcomes.describe(exc)}") from exc
        return (payload, run.context) if run.kind.takes_context else (payload,)

    def _execute(self, run: Running) -> None:
        span = tracing.process(run.job, self.worker_id) if tracing.is_enabled() else None
        try:
            result = run.kind.handler(*self._call_args(run))
            if inspect.isawaitable(result):  # a sync wrapper around a coroutine function, without __wrapped__
                _close(result)
                raise TypeError(f"the handler of {run.kind.name!r} returned an awaitable without running it: "
                                "declare it `async def`, or wrap it with functools.wraps")
        except BaseException as exc:  # SystemExit and KeyboardInterrupt in a handler fail that job only
            self._settle_error(run, exc)
        else:
            self._settle(run, outcomes.succeeded(run.job, now=self.clock(), result=result), None)
        finally:
            self._finish(run, span)

    async def _execute_async(self, run: Running) -> None:
        timeout = run.kind.timeout.total_seconds() if run.kind.timeout else None
        span = tracing.process(run.job, self.worker_id) if tracing.is_enabled() else None
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                result = await run.kind.handler(*self._call_args(run))
        except TimeoutError as exc:
            if deadline.expired() and run.kind.timeout is not None:  # our deadline, not the handler's own error
                self._settle_error(run, outcomes.HandlerTimeout(run.kind.timeout))
            else:
                self._settle_error(run, exc)
        except BaseException as exc:
            self._settle_error(run, exc)
        else:
            self._settle(run, outcomes.succeeded(run.job, now=self.clock(), result=result), None)
        finally:
            self._finish(run, span)

    def _settle_error(self, run: Running, exc: BaseException) -> None:
        """Settle a failed attempt. Nothing about the error can strand the job: if even its outcome cannot be
        computed, the job fails with a record of why."""
        try:
            outcome = outcomes.failed(run.job, exc, retry=run.kind.retry, now=self.clock(), worker=self.worker_id)
        except BaseException as broken:
            log.error("job %d %s: the outcome of its error could not be computed (%s); failing it",
                      run.job.id, run.job.kind, outcomes.describe(broken))
            outcome = outcomes.unrunnable(run.job, f"its error could not be recorded: {outcomes.describe(broken)}",
                                          now=self.clock(), worker=self.worker_id)
        self._settle(run, outcome, exc)

    def _settle(self, run: Running, outcome: Outcome, error: BaseException | None) -> None:
        """Hand the first outcome of a run to the completer; later ones (after a timeout) are dropped."""
        with run.lock:
            if run.settled:
                return
            run.settled = True
            run.outcome, run.error = outcome, error
        self.completer.add(outcome, run.job, time.monotonic() - run.started, error)

    def _finish(self, run: Running, span: tracing.Processing | None = None) -> None:
        with self._state_lock:
            if self._running.get(run.job.id) is run:  # not a later claim of the same job by this worker
                del self._running[run.job.id]
                # Wake the producer only when what it waits for can now hold (a free slot after none; half the
                # slots free after a full claim) and a stop when nothing runs: free slots grow one at a time, so
                # each threshold is met exactly (a notification per job costs the producer a wake-up per job).
                free = self.concurrency - len(self._running)
                if free == 1 or free == self._refill_at or not self._running:
                    self._state_lock.notify_all()
        if span is not None:
            with run.lock:
                outcome, error = run.outcome, run.error
            span.finish(None if outcome is None else outcomes.label(outcome), error)



def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
