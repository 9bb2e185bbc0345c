"""How a pipeline run advances: the step jobs' handler, the commit of a chunk's work, the gates, the reduction,
failures, cancel, and the reconcile pass. The decisions are here, in Python; the statements are
finejobs.store.pipelines'.

A step job processes one chunk. While the step's function runs, no transaction is open: what it emits is
written as *pending* chunks of this attempt (producer job + claim count), each in an autocommit statement.
When it returns, one transaction holding the run's row lock **commits** the chunk: it fences (the job row is
still running, leased by this worker, with this claim count; else the attempt is stale and commits nothing),
drops the pending chunks of the job's earlier attempts, activates this attempt's (queued with a job each for a
streaming next step; ready behind a gate otherwise), marks the chunk done, counts, and **advances**: a step
is complete when it is closed (the one before it complete; step 0 at start) and every chunk in its total is
done, failed or skipped; completing step N closes N+1 and queues its ready chunks (a gate opens), or enqueues
the reduction once (``reduce_job`` set under the lock, and a unique key), or ends the run; empty steps
cascade. A job whose chunk is already done (its worker died after the commit, before the job's outcome was
written) returns at once. The reduction commits its result only while the run is still running: once.

A chunk job can end without its handler committing anything (attempts exhausted, a lease lost on the last
attempt, a timeout, an operator's cancel): the handler records that itself when it knows its attempt is the
last, and the reconcile pass (every worker's Maintenance service) finds the rest and applies the policy.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from finejobs.errors import Cancel, FinejobsError, InvalidJobOptions, PayloadError, PipelineNotFound, Snooze
from finejobs.jobs import Job, JobContext
from finejobs.limits import MAX_MESSAGE_CHARS, MAX_RETURN_VALUE_BYTES, cap, check_text
from finejobs.outcomes import Unrunnable, describe
from finejobs.payloads import encode, encode_value
from finejobs.pipeline_info import PipelineInfo
from finejobs.retry import Retry
from finejobs.store import JobStore
from finejobs.store.pipelines import FINAL_JOB_STATES, ChunkInput, ChunkRow, PipelineTx

if TYPE_CHECKING:
    from finejobs.clock import Clock
    from finejobs.pipelines import Pipeline, Step

log = logging.getLogger("finejobs.pipelines")

MAX_ITEM_BYTES = 10_000_000  # one emitted item as JSON
MAX_CHUNK_CHARS = 50_000_000  # a chunk is closed early (short) once its items' JSON is this long
WRITE_ITEMS = 1_000  # full chunks are written once they hold this many items (one statement for several) ...
WRITE_BYTES = 1_000_000  # ... or this many characters of JSON
OUTPUT_PAGE = 20  # chunks the reduction reads per statement
RECONCILE_BATCH = 200  # lost chunks one reconcile pass repairs at most
RECONCILE_EVERY = 5.0  # seconds between a process's reconcile passes on one database (Maintenance runs more often)

_last_pass: weakref.WeakKeyDictionary[JobStore, float] = weakref.WeakKeyDictionary()
_pass_lock = threading.Lock()


class StaleAttempt(FinejobsError):
    """A step job's attempt no longer holds its job (rescued, cancelled, timed out): it commits nothing."""


class _Emitter:
    """Buffers what a step emits and writes it as pending chunks of ``chunk_size`` items."""

    def __init__(self, store: JobStore, *, pipeline_id: int, target: int | None, job: Job, chunk_size: int,
                 clock: Clock, where: str) -> None:
        self.store, self.pipeline_id, self.target, self.job = store, pipeline_id, target, job
        self.chunk_size, self.clock, self.where = chunk_size, clock, where
        self.buffer: list[str] = []  # the chunk being filled: its items' JSON texts
        self.full: list[tuple[str, int]] = []  # chunks filled, not yet written
        self.buffered = 0  # items in self.full
        self.size = 0  # characters buffered in both
        self.open_size = 0  # characters in self.buffer
        self.items = 0  # items written
        self.chunks = 0  # chunks written

    def emit(self, items: Iterable[Any]) -> None:
        if self.target is None:
            raise InvalidJobOptions(f"step {self.where!r} is the last step and its pipeline has no reduction: nothing "
                                    "takes what it emits (declare a next step or @pipeline.reduce())")
        if isinstance(items, str | bytes | bytearray | Mapping) or not isinstance(items, Iterable):
            raise InvalidJobOptions(f"step {self.where!r}: emit takes an iterable of items (a list, a generator), not "
                                    f"{type(items).__name__}; to emit one item, pass [item]")
        if isinstance(items, Sequence):  # checked whole first: a bad item leaves nothing behind
            for text in [self._encode(i, item) for i, item in enumerate(items)]:
                self._add(text)
        else:  # a generator is streamed (uncommitted chunks of a failed attempt are dropped later)
            for i, item in enumerate(items):
                self._add(self._encode(i, item))

    def _encode(self, index: int, item: Any) -> str:
        try:
            return encode(self.where, item, max_bytes=MAX_ITEM_BYTES)
        except PayloadError as exc:
            why = str(exc).split(": ", 1)[-1].removeprefix("<root>: ")
            raise PayloadError(self.where, [f"items.{index}"], f"emitted item {index}: {why}") from None

    def _add(self, text: str) -> None:
        self.buffer.append(text)
        self.size += len(text)
        self.open_size += len(text)
        if len(self.buffer) >= self.chunk_size or self.open_size >= MAX_CHUNK_CHARS:  # big items: a short chunk
            self.full.append(("[" + ",".join(self.buffer) + "]", len(self.buffer)))
            self.buffered += len(self.buffer)
            self.buffer, self.open_size = [], 0
            if self.buffered >= WRITE_ITEMS or self.size >= WRITE_BYTES:  # small chunks: several per statement
                self._write()

    def _write(self) -> None:
        if self.full and self.target is not None:
            self.store.chunk_insert_pending(pipeline_id=self.pipeline_id, step=self.target, chunks=self.full,
                                            producer_job=self.job.id, producer_claims=self.job.claims,
                                            now=self.clock())
            self.items += self.buffered
            self.chunks += len(self.full)
        self.full, self.buffered, self.size = [], 0, sum(len(t) for t in self.buffer)

    def flush(self) -> None:
        """Write everything emitted so far (the last chunk may be short)."""
        if self.buffer:
            self.full.append(("[" + ",".join(self.buffer) + "]", len(self.buffer)))
            self.buffered += len(self.buffer)
            self.buffer, self.open_size = [], 0
        self._write()


@dataclass
class StepContext(JobContext):
    """Passed to a step's function (as its second parameter): the job context, where the chunk stands in its
    run, the run's ``params`` (as stored, a dict), and ``emit(items)`` to feed the next step."""

    pipeline_id: int = 0
    pipeline_name: str = ""
    step: int = 0
    step_name: str = ""
    chunk_id: int | None = None
    params: Any = None
    _emitter: _Emitter | None = field(default=None, repr=False)

    def emit(self, items: Iterable[Any]) -> None:
        """Send items (any JSON values) to the next step (or the reduction), in chunks of the step's
        chunk_size. They count only if this attempt finishes: a failed or stale attempt's items are dropped."""
        if self._emitter is None:
            raise InvalidJobOptions(f"the reduction {self.step_name!r} of pipeline {self.pipeline_name!r} cannot "
                                    "emit: return its result instead")
        self._emitter.emit(items)

    @property
    def emitted(self) -> int:
        """Items this attempt emitted so far (written or still buffered)."""
        e = self._emitter
        return 0 if e is None else e.items + e.buffered + len(e.buffer)


# ---------------------------------------------------------------- the step jobs' handlers


def run_step(pipeline: Pipeline, step: Step, payload: Mapping[str, Any], ctx: JobContext) -> Any:
    """The handler of a step's job kind: run the step's function on the job's chunk, then commit."""
    store, clock = pipeline.store, pipeline.queue.clock
    found = store.chunk_input(chunk_id=_id(payload, "chunk"))
    if found is None or not _mine(found.pipeline.state, found.chunk, ctx.job):
        return None  # done already (a re-run after the commit), or the run ended: nothing to do
    snap = found.pipeline.steps[found.chunk.step]
    if snap["kind"] != step.kind:
        raise Unrunnable(f"chunk {found.chunk.id} belongs to step {snap['name']!r}, not {step.name!r}")
    target = found.chunk.step + 1
    where = f"{pipeline.name}.{step.name}"
    emitter = _Emitter(store, pipeline_id=found.pipeline.id, target=target if target < len(found.pipeline.steps)
                       else None, job=ctx.job, chunk_size=step.chunk_size, clock=clock, where=where)
    sctx = StepContext(ctx.job, ctx.worker_id, ctx.cancelled, pipeline_id=found.pipeline.id,
                       pipeline_name=pipeline.name, step=found.chunk.step, step_name=step.name,
                       chunk_id=found.chunk.id, params=found.pipeline.params, _emitter=emitter)
    arg = _step_input(step, found)
    try:
        step.fn(arg, sctx) if step.takes_context else step.fn(arg)
        emitter.flush()
    except BaseException as exc:
        if _is_final(exc, ctx.job, step.retry, clock()):
            _failed_now(store, found.pipeline.id, found.chunk.id, ctx, exc, clock())
        raise
    try:
        with store.pipeline_tx(pipeline_id=found.pipeline.id, now=clock()) as tx:
            _fence(tx, ctx)
            committed = commit_chunk(tx, found.chunk.id, ctx.job)
    except StaleAttempt:
        store.chunk_drop_pending(pipeline_id=found.pipeline.id, job_id=ctx.job.id, claims=ctx.job.claims)
        raise
    return {"chunk": found.chunk.id, "emitted": emitter.items if committed else 0}


def _mine(run_state: str, chunk: ChunkRow | None, job: Job) -> bool:
    return run_state == "running" and chunk is not None and chunk.state == "queued" and chunk.job_id == job.id


def _id(payload: Mapping[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unrunnable(f"the payload names no {key} id: {dict(payload)!r}"[:300])
    return value


def _step_input(step: Step, found: ChunkInput) -> Any:
    if found.chunk.step > 0:
        return found.items
    params = found.items[0] if found.items else {}
    if step.model is None:
        return dict(params) if isinstance(params, Mapping) else params
    try:
        return step.model.model_validate(params)
    except Exception as exc:
        raise Unrunnable(f"the run's params no longer fit {step.model.__name__}: {describe(exc)}") from exc


def _is_final(exc: BaseException, job: Job, retry: Retry, now: datetime) -> bool:
    """Whether the worker will end the job on this error (as finejobs.outcomes.failed decides)."""
    if isinstance(exc, Snooze | StaleAttempt):
        return False
    if isinstance(exc, Cancel | Unrunnable):
        return True
    return retry.next_retry_at(attempt=job.attempt, error=exc, now=now, expires_at=job.expires_at,
                               max_attempts=job.max_attempts) is None


def _fence(tx: PipelineTx, ctx: JobContext) -> None:
    if not tx.fence(job_id=ctx.job.id, owner=ctx.worker_id, claims=ctx.job.claims):
        raise StaleAttempt(f"job {ctx.job.id} (claim {ctx.job.claims}) is no longer held by worker {ctx.worker_id}: "
                           "its work is not committed")


def _failed_now(store: JobStore, pipeline_id: int, chunk_id: int | None, ctx: JobContext, exc: BaseException,
                now: datetime) -> None:
    """The last attempt failed: apply the policy now rather than at the next reconcile pass (which would)."""
    state = "cancelled" if isinstance(exc, Cancel) else "failed"
    try:
        with store.pipeline_tx(pipeline_id=pipeline_id, now=now) as tx:
            if not tx.fence(job_id=ctx.job.id, owner=ctx.worker_id, claims=ctx.job.claims):
                return
            if chunk_id is None:
                if tx.pipeline.state == "running" and tx.pipeline.reduce_job == ctx.job.id:
                    end_run(tx, "failed", f"the reduction (job {ctx.job.id}) {state}: {describe(exc)}")
                return
            chunk = tx.chunk(chunk_id)
            if chunk is not None and _mine(tx.pipeline.state, chunk, ctx.job):
                chunk_lost(tx, chunk, state, describe(exc))
    except Exception as broken:  # the reconcile pass will do it
        log.warning("pipeline %d: could not record the failure of job %d now (%s)", pipeline_id, ctx.job.id,
                    describe(broken))


# ---------------------------------------------------------------- commit and advance (under the run's lock)


def commit_chunk(tx: PipelineTx, chunk_id: int, job: Job) -> bool:
    """Commit what claim ``job.claims`` of ``job`` did with its chunk (see the module docstring); False if the
    chunk is no longer this job's to commit (done already, or the run ended): its output is dropped."""
    chunk = tx.chunk(chunk_id)
    if chunk is None or not _mine(tx.pipeline.state, chunk, job):
        tx.drop_pending(job_id=job.id)
        return False
    tx.drop_pending(job_id=job.id, keep_claims=job.claims)
    snap = tx.pipeline.steps
    target = chunk.step + 1
    if target < len(snap):
        spec = snap[target]
        stream = not spec.get("reduce") and not spec["gated"]
        chunks, items = tx.activate(job_id=job.id, claims=job.claims, step=target, queue=spec if stream else None)
        if chunks:
            tx.count(target, started=stream, chunks_total=chunks, items_total=items)
    tx.chunk_end(chunk_id=chunk.id, state="done")
    tx.count(chunk.step, chunks_done=1, items_done=chunk.n_items)
    advance(tx, chunk.step)
    return True


def advance(tx: PipelineTx, step: int) -> None:
    """Finish every step from ``step`` on that is complete, opening the next one's gate each time."""
    snap = tx.pipeline.steps
    rows = tx.steps()
    i = step
    while i < len(rows) and tx.pipeline.state == "running":
        row = rows[i]
        if row.finished_at is not None:
            i += 1
            continue
        if row.reduce or not row.closed or row.settled < row.chunks_total:
            return
        tx.step_finish(i)
        nxt = i + 1
        if nxt >= len(rows):
            if tx.finish(state="succeeded"):
                tx.drop_all_pending()  # a stale attempt's leftovers
            return
        tx.close(nxt)
        spec = snap[nxt]
        if spec.get("reduce"):
            if tx.pipeline.reduce_job is None:
                tx.enqueue_reduce(spec=spec)
                tx.count(nxt, started=True)
            return
        if spec["gated"] and tx.queue_ready(step=nxt, spec=spec):
            tx.count(nxt, started=True)
        rows = tx.steps()
        i = nxt


def chunk_lost(tx: PipelineTx, chunk: ChunkRow, job_state: str | None, message: str | None) -> None:
    """A chunk's job ended without committing it: skip the chunk or fail the run, by the step's policy."""
    spec = tx.pipeline.steps[chunk.step]
    why = cap(f"{job_state or 'gone'}: {message or 'no error recorded'}", MAX_MESSAGE_CHARS)
    if chunk.job_id is not None:
        tx.drop_pending(job_id=chunk.job_id)
    if spec.get("on_failure") == "skip":
        tx.chunk_end(chunk_id=chunk.id, state="skipped", error=why)
        tx.count(chunk.step, chunks_skipped=1, items_skipped=chunk.n_items)
        log.warning("pipeline %d: step %r chunk %d skipped (job %s %s)", tx.pipeline.id, spec["name"], chunk.id,
                    chunk.job_id, why)
        advance(tx, chunk.step)
        return
    tx.chunk_end(chunk_id=chunk.id, state="failed", error=why)
    tx.count(chunk.step, chunks_failed=1, items_failed=chunk.n_items)
    end_run(tx, "failed", f"step {spec['name']!r} chunk {chunk.id} (job {chunk.job_id}) {why}")


def end_run(tx: PipelineTx, state: str, error: str) -> None:
    """End a running run as failed or cancelled: its waiting jobs are cancelled, its uncommitted chunks dropped
    (running jobs find the run ended when they try to commit, and commit nothing)."""
    error = cap(error, MAX_MESSAGE_CHARS)
    if not tx.finish(state=state, error=error):
        return
    tx.cancel_waiting(reason=cap(f"pipeline run {tx.pipeline.id} {state}: {error}", MAX_MESSAGE_CHARS))
    tx.drop_all_pending()
    log.warning("pipeline %d (%s) %s: %s", tx.pipeline.id, tx.pipeline.name, state, error)


# ---------------------------------------------------------------- the reduction


def run_reduction(pipeline: Pipeline, step: Step, payload: Mapping[str, Any], ctx: JobContext) -> Any:
    """The handler of the reduction's job kind: the function over every output, then the result, once."""
    store, clock = pipeline.store, pipeline.queue.clock
    run_id = _id(payload, "pipeline")
    try:
        row = store.pipeline_get(pipeline_id=run_id)
    except PipelineNotFound:
        return None
    if row.state != "running" or row.reduce_job != ctx.job.id:
        return None  # committed already (a re-run), or the run ended
    index = len(row.steps) - 1
    seen = [0, 0]  # items, chunks
    sctx = StepContext(ctx.job, ctx.worker_id, ctx.cancelled, pipeline_id=run_id, pipeline_name=pipeline.name,
                       step=index, step_name=step.name, params=row.params)
    try:
        outputs = _outputs(store, run_id, index, seen)
        result = step.fn(outputs, sctx) if step.takes_context else step.fn(outputs)
        result_json = None if result is None else encode_value(result, max_bytes=MAX_RETURN_VALUE_BYTES)
        if result is not None and result_json is None:
            raise Unrunnable(str(PayloadError(step.kind, ["<root>"], "the reduction's result cannot be stored as "
                                                                     f"JSON (or is over {MAX_RETURN_VALUE_BYTES} "
                                                                     "bytes)")))
    except BaseException as exc:
        if _is_final(exc, ctx.job, step.retry, clock()):
            _failed_now(store, run_id, None, ctx, exc, clock())
        raise
    with store.pipeline_tx(pipeline_id=run_id, now=clock()) as tx:
        _fence(tx, ctx)
        if tx.pipeline.state != "running" or tx.pipeline.reduce_job != ctx.job.id:
            return None
        tx.count(index, chunks_done=seen[1], items_done=seen[0])
        tx.step_finish(index)
        tx.outputs_done(step=index)
        tx.finish(state="succeeded", result_json=result_json)
        tx.drop_all_pending()
    return result


def _outputs(store: JobStore, run_id: int, step: int, seen: list[int]) -> Iterator[Any]:
    """Every item the last step committed, in chunk order: keyset pages of OUTPUT_PAGE chunks, each read in a
    short statement of its own (no transaction stays open while the reduction runs)."""
    after = 0
    while True:
        page = store.pipeline_outputs(pipeline_id=run_id, step=step, after=after, limit=OUTPUT_PAGE)
        for chunk_id, items in page:
            for item in items:
                seen[0] += 1
                yield item
            after = chunk_id
            seen[1] += 1
        if len(page) < OUTPUT_PAGE:
            return


# ---------------------------------------------------------------- operations and the reconcile pass


def info(store: JobStore, run_id: int, *, database: str = "default") -> PipelineInfo:
    """A run's state and every step's progress (PipelineNotFound if there is none)."""
    row = store.pipeline_get(pipeline_id=run_id)
    return PipelineInfo.from_rows(row, store.pipeline_steps(pipeline_ids=[run_id])[run_id], database)


def cancel(store: JobStore, run_id: int, *, reason: str, now: datetime, database: str = "default") -> PipelineInfo:
    """Cancel a running run (FinejobsError if it already ended); its final progress."""
    check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
    with store.pipeline_tx(pipeline_id=run_id, now=now) as tx:
        if tx.pipeline.state != "running":
            raise FinejobsError(f"cannot cancel pipeline run {run_id}: it is {tx.pipeline.state}")
        end_run(tx, "cancelled", reason)
    return info(store, run_id, database=database)


def reconcile_due(store: JobStore, *, now: datetime) -> int:
    """The reconcile pass, if this process has not run one on this database in the last RECONCILE_EVERY
    seconds (it reads every queued chunk of running runs: cheap, but not free with many queued)."""
    with _pass_lock:
        last = _last_pass.get(store)
        if last is not None and time.monotonic() - last < RECONCILE_EVERY:
            return 0
        _last_pass[store] = time.monotonic()
    return reconcile(store, now=now)


def reconcile(store: JobStore, *, now: datetime, limit: int = RECONCILE_BATCH) -> int:
    """Apply the failure policy to queued chunks (and reductions) of running runs whose job ended without
    committing them; returns how many were repaired. One worker at a time (an advisory lock); each item is
    checked again under its run's lock."""
    repaired = 0
    with store.pipeline_maintenance(now=now) as m:
        if not m.try_lock():
            return 0
        for lost in m.lost(limit=limit):
            tx = m.pipeline(lost.pipeline_id)
            if tx.pipeline.state != "running" or lost.job_id is None:
                continue
            state, message = tx.job_state(lost.job_id)
            if state is not None and state not in FINAL_JOB_STATES:
                continue  # retried by an operator meanwhile
            if state == "succeeded":
                message = "the job succeeded without committing its work"
            if lost.chunk_id is None:
                if tx.pipeline.reduce_job == lost.job_id:
                    end_run(tx, "failed", f"the reduction (job {lost.job_id}) {state or 'gone'}: {message}")
                    repaired += 1
                continue
            chunk = tx.chunk(lost.chunk_id)
            if chunk is None or chunk.state != "queued" or chunk.job_id != lost.job_id:
                continue
            chunk_lost(tx, chunk, state, message)
            repaired += 1
    return repaired
