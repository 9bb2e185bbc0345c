"""Step pipelines on a real PostgreSQL with real workers (driven step by step with ``work_once()`` and the
FakeClock): gates and streaming, the reduction (every item once, one run), failure policies, retries, cancel,
progress counters, re-runs after a commit, the reconcile pass, and bad input that writes nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pydantic
import pytest

from finejobs import FinejobsError, InvalidJobOptions, JobState, PayloadError, Queue, Retry
from finejobs.admin.pipelines import PipelineOps
from finejobs.errors import PipelineNotFound
from finejobs.pipeline_engine import reconcile
from finejobs.pipelines import Pipeline, StepContext, pipeline
from finejobs.runtime.worker import Worker
from finejobs.testing import FakeClock

DB = psycopg.Connection[tuple[Any, ...]]
NOW = Retry(max_attempts=3, backoff=timedelta(0), max_backoff=timedelta(0), jitter=timedelta(0))
ONCE = Retry(max_attempts=1)


class Params(pydantic.BaseModel):
    n: int
    label: str = "x"


@pytest.fixture
def q(queue: Queue, db: DB) -> Queue:
    db.execute("TRUNCATE finejobs_pipelines, finejobs_pipeline_steps, finejobs_chunks RESTART IDENTITY CASCADE")
    return queue


class Calls:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[Any, ...]] = []

    def add(self, *item: Any) -> None:
        with self.lock:
            self.items.append(item)

    def of(self, step: str) -> list[tuple[Any, ...]]:
        return [c for c in self.items if c[0] == step]

    def order(self) -> list[str]:
        return [c[0] for c in self.items]


def worker(q: Queue, name: str = "w1", concurrency: int = 1, **options: Any) -> Worker:
    made = q.worker(listen=False, worker_id=name, concurrency=concurrency, run_scheduler=False, register=False,
                    **options)
    assert isinstance(made, Worker)
    return made


def drain(w: Worker, rounds: int = 500) -> int:
    ran = 0
    for _ in range(rounds):
        got = w.work_once()
        if not got:
            return ran
        ran += len(got)
    raise AssertionError("the pipeline did not drain")


def one(db: DB, sql: str, *args: Any) -> Any:
    row = db.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


def counts(db: DB, sql: str, *args: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in db.execute(sql, args).fetchall()}


def three_steps(q: Queue, calls: Calls, *, write_gated: bool, chunk_size: int = 3, reduce: bool = True,
                **options: Any) -> Pipeline:
    """fetch emits 0..n-1; expand emits each item twice (i, -i); write sums its chunk; reduce adds up."""
    p = pipeline(q, "exp", chunk_size=chunk_size, **options)

    @p.step("fetch")
    def fetch(params: Params, ctx: StepContext) -> None:
        calls.add("fetch", ctx.chunk_id, params.n)
        ctx.emit(list(range(params.n)))

    @p.step("expand", gated=True)
    def expand(items: list[int], ctx: StepContext) -> None:
        calls.add("expand", ctx.chunk_id, list(items))
        ctx.emit([x for i in items for x in (i, 1000 + i)])

    @p.step("write", gated=write_gated, priority=1)  # claimed before waiting expand jobs: streaming shows
    def write(items: list[int], ctx: StepContext) -> None:
        calls.add("write", ctx.chunk_id, list(items))
        if reduce:
            ctx.emit([{"n": len(items), "sum": sum(items), "items": list(items)}])

    if reduce:
        @p.reduce()
        def report(outputs: Iterator[dict[str, Any]], ctx: StepContext) -> dict[str, Any]:
            seen: list[int] = []
            for out in outputs:
                seen += out["items"]
            calls.add("reduce", ctx.job.id, len(seen))
            return {"n": len(seen), "sum": sum(seen), "distinct": len(set(seen))}

    return p


# ---------------------------------------------------------------- gates, streaming, reduction, progress


def test_gated_steps_start_after_the_previous_step_finished_and_the_reduction_sees_every_item_once(
        q: Queue, db: DB) -> None:
    calls = Calls()
    p = three_steps(q, calls, write_gated=True)
    run = p.start(Params(n=10))
    started = run.progress()
    assert started.state == "running"
    assert [(s.name, s.state, s.chunks_total, s.items_total) for s in started.steps] == [
        ("fetch", "running", 1, 1), ("expand", "waiting", 0, 0), ("write", "waiting", 0, 0),
        ("reduce", "waiting", 0, 0)]
    w = worker(q)
    drain(w)
    order = calls.order()
    assert order.count("expand") == 4 and order.count("write") == 7 and order.count("reduce") == 1
    # Gated: no write before the last expand, although write's jobs have the higher priority.
    assert max(i for i, s in enumerate(order) if s == "expand") < min(i for i, s in enumerate(order) if s == "write")
    done = run.wait(timeout=5)
    assert done.state == "succeeded" and done.error is None
    expected = list(range(10)) + [1000 + i for i in range(10)]
    assert done.result == {"n": 20, "sum": sum(expected), "distinct": 20}
    table = {s.name: (s.state, s.chunks_total, s.chunks_done, s.items_total, s.items_done) for s in done.steps}
    assert table == {"fetch": ("done", 1, 1, 1, 1), "expand": ("done", 4, 4, 10, 10),
                     "write": ("done", 7, 7, 20, 20), "reduce": ("done", 7, 7, 7, 7)}
    assert counts(db, "SELECT state, count(*) FROM finejobs_chunks GROUP BY 1") == {"done": 19}
    jobs = counts(db, "SELECT kind, count(*) FROM finejobs_jobs GROUP BY 1")
    assert jobs == {"exp.fetch": 1, "exp.expand": 4, "exp.write": 7, "exp.reduce": 1}
    assert counts(db, "SELECT state, count(*) FROM finejobs_jobs GROUP BY 1") == {"succeeded": 13}
    assert q.get(one(db, "SELECT reduce_job FROM finejobs_pipelines")).return_value == done.result


def test_a_streaming_step_starts_on_chunks_before_the_previous_step_finished(q: Queue) -> None:
    calls = Calls()
    p = three_steps(q, calls, write_gated=False)
    run = p.start({"n": 10})
    drain(worker(q))
    order = calls.order()
    first_write = min(i for i, s in enumerate(order) if s == "write")
    last_expand = max(i for i, s in enumerate(order) if s == "expand")
    assert first_write < last_expand, order
    assert order[:3] == ["fetch", "expand", "write"]
    done = run.progress()
    assert done.state == "succeeded"
    assert done.result == {"n": 20, "sum": sum(range(10)) + sum(1000 + i for i in range(10)), "distinct": 20}
    assert len(calls.of("reduce")) == 1


def test_steps_without_a_reduction_end_the_run_when_the_last_step_finishes_and_empty_steps_cascade(
        q: Queue) -> None:
    calls = Calls()
    p = three_steps(q, calls, write_gated=True, reduce=False)
    run = p.start({"n": 0})  # fetch emits nothing: expand and write complete empty, at once
    assert drain(worker(q)) == 1
    done = run.progress()
    assert done.state == "succeeded" and done.result is None
    assert [(s.state, s.chunks_total) for s in done.steps] == [("done", 1), ("done", 0), ("done", 0)]
    assert calls.order() == ["fetch"]


def test_a_reduction_over_no_output_runs_once_over_nothing(q: Queue) -> None:
    calls = Calls()
    p = three_steps(q, calls, write_gated=True)
    run = p.start({"n": 0})
    drain(worker(q))
    assert run.progress().result == {"n": 0, "sum": 0, "distinct": 0}
    assert len(calls.of("reduce")) == 1


# ---------------------------------------------------------------- retries, failure policies


def flaky_pipeline(q: Queue, calls: Calls, *, on_failure: str, retry: Retry, bad: int = 4) -> Pipeline:
    """expand fails every attempt on the chunk holding ``bad``, after emitting (that output must not count)."""
    p = pipeline(q, "flaky", chunk_size=2)

    @p.step("fetch")
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        ctx.emit(list(range(8)))

    @p.step("expand", on_failure=on_failure, retry=retry)
    def expand(items: list[int], ctx: StepContext) -> None:
        calls.add("expand", ctx.chunk_id, ctx.attempt, list(items))
        ctx.emit([i * 10 for i in items])
        if bad in items:
            raise RuntimeError(f"cannot expand {bad}")

    @p.reduce()
    def total(outputs: Iterator[int], ctx: StepContext) -> list[int]:
        calls.add("reduce")
        return sorted(outputs)

    return p


def test_skip_records_the_chunk_and_the_run_goes_on_without_its_items(q: Queue, db: DB) -> None:
    calls = Calls()
    run = flaky_pipeline(q, calls, on_failure="skip", retry=NOW).start({})
    drain(worker(q))
    done = run.progress()
    assert done.state == "succeeded"
    assert done.result == [0, 10, 20, 30, 60, 70]  # the chunk [4, 5] was skipped, its emits dropped
    expand = done.step("expand")
    assert (expand.chunks_total, expand.chunks_done, expand.chunks_skipped, expand.chunks_failed) == (4, 3, 1, 0)
    assert (expand.items_total, expand.items_done, expand.items_skipped) == (8, 6, 2)
    assert len([c for c in calls.of("expand") if 4 in c[3]]) == 3, "retried per the step's policy: 3 attempts"
    error = one(db, "SELECT error FROM finejobs_chunks WHERE state = 'skipped'")
    assert "cannot expand 4" in error
    assert counts(db, "SELECT state, count(*) FROM finejobs_chunks WHERE state = 'pending' GROUP BY 1") == {}


def test_fail_ends_the_run_names_the_chunk_and_cancels_its_waiting_jobs(q: Queue, db: DB) -> None:
    calls = Calls()
    run = flaky_pipeline(q, calls, on_failure="fail", retry=ONCE, bad=0).start({})
    w = worker(q)
    w.work_once()  # fetch: 4 expand chunks queued
    w.work_once()  # the first expand chunk [0, 1] fails on its only attempt
    done = run.progress()
    assert done.state == "failed" and done.finished_at is not None
    assert done.error is not None and "step 'expand' chunk" in done.error and "cannot expand 0" in done.error
    assert done.step("expand").chunks_failed == 1 and done.step("expand").items_failed == 2
    assert counts(db, "SELECT state, count(*) FROM finejobs_jobs WHERE kind = 'flaky.expand' GROUP BY 1") == {
        "failed": 1, "cancelled": 3}
    assert drain(w) == 0 and calls.of("reduce") == []
    assert done.step("reduce").state == "stopped"


def test_retries_drop_what_failed_attempts_emitted(q: Queue) -> None:
    calls = Calls()
    p = pipeline(q, "retrying", chunk_size=2)
    attempts: dict[int, int] = {}

    @p.step("fetch")
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        ctx.emit(list(range(6)))

    @p.step("work", retry=NOW)
    def work(items: list[int], ctx: StepContext) -> None:
        ctx.emit(items)
        attempts[ctx.chunk_id or 0] = ctx.attempt
        if ctx.attempt < 3:
            raise RuntimeError("try again")

    @p.reduce()
    def collect(outputs: Iterator[int]) -> list[int]:
        calls.add("reduce")
        return list(outputs)

    run = p.start()
    drain(worker(q))
    assert sorted(run.progress().result) == list(range(6))
    assert set(attempts.values()) == {3}


# ---------------------------------------------------------------- cancel, re-runs, the reconcile pass


def test_cancel_cancels_waiting_jobs_and_a_running_job_commits_nothing(q: Queue, db: DB, clock: FakeClock) -> None:
    calls = Calls()
    p = pipeline(q, "cancelling", chunk_size=2)
    runs: list[Any] = []

    @p.step("fetch")
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        ctx.emit(list(range(6)))

    @p.step("expand", gated=False)
    def expand(items: list[int], ctx: StepContext) -> None:
        calls.add("expand", ctx.chunk_id)
        ctx.emit(items)
        runs[0].cancel("wrong export")  # an operator cancels the run while this chunk's job runs

    @p.step("write")
    def write(items: list[int]) -> None:
        calls.add("write")

    runs.append(p.start({}))
    w = worker(q)
    w.work_once()  # fetch: 3 expand jobs
    w.work_once()  # the first expand job cancels the run, then returns: its output is discarded
    assert len(calls.of("expand")) == 1
    done = runs[0].progress()
    assert done.state == "cancelled" and done.error == "wrong export" and done.finished_at is not None
    assert counts(db, "SELECT state, count(*) FROM finejobs_jobs WHERE kind = 'cancelling.expand' GROUP BY 1") == {
        "succeeded": 1, "cancelled": 2}
    assert counts(db, "SELECT state, count(*) FROM finejobs_chunks GROUP BY 1") == {"done": 1, "queued": 3}
    assert (done.step("expand").chunks_done, done.step("write").chunks_total) == (0, 0)
    assert [s.state for s in done.steps] == ["done", "stopped", "stopped"]
    assert drain(w) == 0 and calls.of("write") == []
    with pytest.raises(FinejobsError, match="it is cancelled"):
        runs[0].cancel()


def test_a_rerun_after_the_commit_returns_at_once_and_counts_nothing_twice(
        q: Queue, db: DB, clock: FakeClock) -> None:
    calls = Calls()
    run = three_steps(q, calls, write_gated=True).start({"n": 3})
    lease = timedelta(seconds=30)
    w1 = worker(q, "w1", lease=lease)
    w1.work_once()  # fetch: one expand chunk [0, 1, 2]
    (job,) = w1._claim(1)
    first = w1._launch_record(job)
    assert first is not None
    w1._execute(first)  # the chunk is committed ...
    w1.completer._buffer.clear()  # ... and the worker dies before the job's outcome is written
    before = run.progress().step("expand")
    assert (before.chunks_done, before.items_done) == (1, 3)
    clock.advance(lease + timedelta(seconds=1))
    w2 = worker(q, "w2")
    assert w2.maintenance.run_once(clock()).rescued == 1
    drain(w2)
    assert len(calls.of("expand")) == 1, "the re-run did not call the step again"
    done = run.progress()
    assert done.state == "succeeded" and done.result == {"n": 6, "sum": 3 + 3003, "distinct": 6}
    assert (done.step("expand").chunks_done, done.step("expand").items_done) == (1, 3)
    assert q.get(job.id).attempt == 2 and q.get(job.id).state is JobState.SUCCEEDED


def test_a_stale_attempt_commits_nothing_while_the_next_claim_commits_once(
        q: Queue, db: DB, clock: FakeClock) -> None:
    lease = timedelta(seconds=30)
    w1, w2 = worker(q, "w1", lease=lease), worker(q, "w2", lease=lease)
    p = pipeline(q, "stale", chunk_size=2)
    calls: list[str] = []

    @p.step("fetch")
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        ctx.emit([1, 2, 3])

    @p.step("work")
    def work(items: list[int], ctx: StepContext) -> None:
        calls.append(ctx.worker_id)
        ctx.emit([i * 10 for i in items])  # chunk_size 2: one chunk flushed now, the rest at the end
        if ctx.worker_id == "w1":  # w1 stalls; its lease runs out; w2 takes the job over and commits it
            clock.advance(lease + timedelta(seconds=1))
            assert w2.maintenance.run_once(clock()).rescued == 1
            drain(w2)

    @p.reduce()
    def collect(outputs: Iterator[int]) -> list[int]:
        return sorted(outputs)

    run = p.start()
    w1.work_once()  # fetch
    w1.work_once()  # the first work chunk: w1 stalls inside it, then returns: stale, its output dropped
    assert "w1" in calls and "w2" in calls
    assert w1.stats["discarded"] >= 1
    drain(w2)
    done = run.progress()
    assert done.state == "succeeded" and done.result == [10, 20, 30]
    assert (done.step("work").items_total, done.step("work").items_done) == (3, 3)
    assert (done.step("reduce").items_total, done.step("reduce").items_done) == (3, 3)
    assert one(db, "SELECT count(*) FROM finejobs_chunks WHERE state = 'pending'") == 0


def test_a_reduction_killed_after_its_commit_does_not_commit_again(q: Queue, db: DB, clock: FakeClock) -> None:
    calls = Calls()
    run = three_steps(q, calls, write_gated=True).start({"n": 2})
    lease = timedelta(seconds=30)
    w1 = worker(q, "w1", lease=lease)
    while run.progress().step("write").state != "done":
        w1.work_once()
    (job,) = w1._claim(1)
    assert job.kind == "exp.reduce"
    first = w1._launch_record(job)
    assert first is not None
    w1._execute(first)
    w1.completer._buffer.clear()
    result = run.progress().result
    clock.advance(lease + timedelta(seconds=1))
    w2 = worker(q, "w2")
    w2.maintenance.run_once(clock())
    drain(w2)
    assert len(calls.of("reduce")) == 1 and run.progress().result == result
    assert counts(db, "SELECT kind, count(*) FROM finejobs_jobs WHERE kind = 'exp.reduce' GROUP BY 1") == {
        "exp.reduce": 1}


def test_maintenance_applies_the_policy_to_chunks_whose_job_ended_unseen(q: Queue, db: DB, clock: FakeClock) -> None:
    calls = Calls()
    run = flaky_pipeline(q, calls, on_failure="skip", retry=ONCE, bad=99).start({})
    lease = timedelta(seconds=30)
    w1 = worker(q, "w1", lease=lease)
    w1.work_once()  # fetch: 4 expand chunks
    (lost,) = w1._claim(1)  # its worker dies on its last (only) attempt: rescue fails the job
    cancelled = one(db, "SELECT job_id FROM finejobs_chunks WHERE step = 1 AND job_id <> %s ORDER BY id LIMIT 1",
                    lost.id)
    q.cancel(cancelled, "operator")  # and an operator cancels another chunk's job
    clock.advance(lease + timedelta(seconds=1))
    w2 = worker(q, "w2")
    w2.maintenance.run_once(clock())  # rescue (job failed), then the reconcile pass: both chunks skipped
    assert q.get(lost.id).state is JobState.FAILED
    expand = run.progress().step("expand")
    assert (expand.chunks_skipped, expand.items_skipped) == (2, 4)
    assert reconcile(q.store, now=clock()) == 0, "nothing left to repair"
    drain(w2)
    done = run.progress()
    assert done.state == "succeeded" and len(done.result) == 4


def test_a_reduction_whose_job_was_cancelled_fails_the_run(q: Queue, clock: FakeClock) -> None:
    calls = Calls()
    run = three_steps(q, calls, write_gated=True).start({"n": 1})
    w = worker(q)
    while run.progress().step("write").state != "done":
        w.work_once()
    reduce_job = q.jobs(kind="exp.reduce")[0]
    q.cancel(reduce_job.id, "no report needed")
    assert reconcile(q.store, now=clock()) == 1
    done = run.progress()
    assert done.state == "failed" and done.error is not None and "no report needed" in done.error


# ---------------------------------------------------------------- operations API, real threads


def test_operations_list_get_and_cancel(q: Queue) -> None:
    calls = Calls()
    p = three_steps(q, calls, write_gated=True)
    runs = [p.start({"n": i}) for i in range(3)]
    audit: list[tuple[Any, ...]] = []
    ops = PipelineOps(q, lambda action, target, count, detail: audit.append((action, target, count, detail)))
    page = ops.list(limit=2)
    assert [r.id for r in page.pipelines] == [runs[2].id, runs[1].id] and page.next_before == runs[1].id
    assert [r.id for r in ops.list(limit=2, before=page.next_before).pipelines] == [runs[0].id]
    assert ops.list(state="succeeded").pipelines == ()
    got = ops.get(runs[1].id)
    assert got.params == {"n": 1, "label": "x"} and len(got.steps) == 4
    as_json = got.to_json()
    assert as_json["steps"][0]["name"] == "fetch" and as_json["state"] == "running"
    assert ops.cancel(runs[0].id, "test").state == "cancelled"
    assert [r.id for r in ops.list(state="cancelled").pipelines] == [runs[0].id]
    with pytest.raises(FinejobsError, match="running"):
        ops.delete(runs[1].id)
    ops.delete(runs[0].id)
    assert audit == [("pipeline cancel", {"pipeline": runs[0].id, "name": "exp"}, 1, "test"),
                     ("pipeline delete", {"pipeline": runs[0].id}, 1, None)]
    assert [r.id for r in ops.list().pipelines] == [runs[2].id, runs[1].id]
    with pytest.raises(PipelineNotFound):
        ops.get(runs[0].id)
    with pytest.raises(PipelineNotFound):
        ops.delete(999)
    with pytest.raises(PipelineNotFound):
        ops.get(999)
    with pytest.raises(InvalidJobOptions):
        ops.list(state="done")
    with pytest.raises(InvalidJobOptions):
        ops.list(limit=0)


def test_threaded_workers_run_a_pipeline_to_the_end(q: Queue) -> None:
    calls = Calls()
    p = three_steps(q, calls, write_gated=False, chunk_size=25)
    run = p.start({"n": 500})
    workers = [worker(q, f"t{i}", concurrency=4, poll_interval=0.02) for i in range(2)]
    for w in workers:
        w.start()
    try:
        done = run.wait(timeout=30)
    finally:
        for w in workers:
            w.stop()
    assert done.state == "succeeded"
    assert done.result == {"n": 1000, "sum": sum(range(500)) + sum(1000 + i for i in range(500)), "distinct": 1000}
    assert len(calls.of("reduce")) == 1


# ---------------------------------------------------------------- bad input writes nothing


def test_bad_starts_write_nothing(q: Queue, db: DB) -> None:
    empty = pipeline(q, "empty")
    with pytest.raises(InvalidJobOptions, match="no steps"):
        empty.start({})
    calls = Calls()
    p = three_steps(q, calls, write_gated=True)
    with pytest.raises(PayloadError, match="n"):
        p.start({"n": "many"})
    with pytest.raises(PayloadError, match="extra"):
        p.start({"n": 1, "colour": "red"})
    assert db.execute("SELECT count(*) FROM finejobs_pipelines").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM finejobs_chunks").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (0,)


def test_bad_emits_fail_the_attempt_and_leave_nothing(q: Queue, db: DB) -> None:
    p = pipeline(q, "emits", chunk_size=2)

    @p.step("fetch", retry=ONCE)
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        if params["how"] == "set":
            ctx.emit([1, 2, {3}])  # a set is not JSON: the whole call is refused
        elif params["how"] == "one":
            ctx.emit({"a": 1})
        else:
            ctx.emit([1])

    @p.step("last", retry=ONCE)
    def last(items: list[Any], ctx: StepContext) -> None:
        ctx.emit(items)  # nowhere to go: no next step, no reduction

    for how, why in (("set", "not JSON-serializable"), ("one", "iterable of items"),
                     ("last", "nothing takes what it emits")):
        run = p.start({"how": how})
        drain(worker(q))
        done = run.progress()
        assert done.state == "failed" and done.error is not None and why in done.error, (how, done.error)
    assert db.execute("SELECT count(*) FROM finejobs_chunks WHERE state = 'pending'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM finejobs_chunks WHERE step = 1 AND state = 'ready'").fetchone() == (0,)


def test_start_in_the_callers_transaction(q: Queue, db: DB, clean_db: str) -> None:
    from finejobs.store import libpq_url

    calls = Calls()
    p = three_steps(q, calls, write_gated=True)
    with psycopg.connect(libpq_url(clean_db)) as conn:
        p.start({"n": 2}, conn=conn)
        conn.rollback()  # the caller's transaction rolls back: no run, no job
    assert one(db, "SELECT count(*) FROM finejobs_pipelines") == 0
    assert one(db, "SELECT count(*) FROM finejobs_jobs") == 0
    with psycopg.connect(libpq_url(clean_db)) as conn:
        run = p.start({"n": 2}, conn=conn)
    drain(worker(q))
    assert run.progress().result == {"n": 4, "sum": 1 + 2001, "distinct": 4}
