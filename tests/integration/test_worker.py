"""The worker on a real PostgreSQL: transitions, leases, claims, maintenance.

Most tests drive one worker step by step with ``work_once()`` and the FakeClock; the few that start
real threads keep their waits short and poll with a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from finejobs import Cancel, Job, JobContext, JobKind, JobState, Queue, Retry, Snooze
from finejobs.store import Outcome
from finejobs.testing import FakeClock

SECOND = timedelta(seconds=1)
LEASE = timedelta(seconds=30)
NO_JITTER = Retry(max_attempts=3, backoff=10 * SECOND, max_backoff=timedelta(hours=1), jitter=timedelta(0))

DB = psycopg.Connection[tuple[Any, ...]]


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def states(db: DB) -> dict[str, int]:
    return dict(db.execute("SELECT state, count(*) FROM finejobs_jobs GROUP BY state").fetchall())


class Calls:
    """Records handler calls, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def ok(queue: Queue, calls: Calls) -> JobKind[Any, Any]:
    @queue.job("ok")
    def handle(payload: dict[str, Any]) -> None:
        calls.add(payload)

    return handle


@pytest.fixture
def flaky(queue: Queue, calls: Calls) -> JobKind[Any, Any]:
    @queue.job("flaky", retry=NO_JITTER)
    def always_fails(payload: dict[str, Any]) -> None:
        calls.add(payload)
        raise RuntimeError("flaky gateway")

    return always_fails


def claim(queue: Queue, clock: FakeClock, *, owner: str = "w1", limit: int = 10, shard: str = "default",
          lease: timedelta = LEASE) -> list[Job]:
    return queue.store.job_claim(owner=owner, shard=shard, kinds=sorted(queue.kinds), limit=limit, lease=lease,
                                 now=clock())


# ---------------------------------------------------------------- transitions


def test_success(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock, calls: Calls) -> None:
    job = ok.enqueue({"n": 1})
    worker = queue.worker(listen=False)
    assert [j.id for j in worker.work_once()] == [job.id]
    done = queue.get(job.id)
    assert done.state is JobState.SUCCEEDED
    assert (done.attempt, done.errors, done.lease_owner, done.lease_expires_at) == (1, (), None, None)
    assert done.started_at == done.finished_at == clock()
    assert calls.items == [{"n": 1}]
    assert worker.stats["succeeded"] == 1


def test_claim_sets_running_attempt_and_lease(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    job = ok.enqueue({})
    (claimed,) = claim(queue, clock, owner="w7")
    assert claimed.id == job.id
    assert claimed.state is JobState.RUNNING
    assert (claimed.attempt, claimed.lease_owner) == (1, "w7")
    assert claimed.lease_expires_at == clock() + LEASE
    assert claimed.started_at == clock()
    assert claim(queue, clock, owner="w8") == []


def test_failure_retries_later_then_fails_with_one_error_per_attempt(
    queue: Queue, flaky: JobKind[Any, Any], clock: FakeClock, calls: Calls
) -> None:
    job = flaky.enqueue({"n": 1})
    worker = queue.worker(listen=False, worker_id="w-test")

    assert len(worker.work_once()) == 1
    first = queue.get(job.id)
    assert first.state is JobState.SCHEDULED
    assert first.run_at == clock() + 10 * SECOND
    assert first.attempt == 1
    assert first.finished_at is None

    clock.advance(9 * SECOND)
    assert worker.work_once() == [], "not claimable before its new run_at"
    clock.advance(SECOND)
    assert len(worker.work_once()) == 1
    assert queue.get(job.id).run_at == clock() + 20 * SECOND

    clock.advance(20 * SECOND)
    assert len(worker.work_once()) == 1
    final = queue.get(job.id)
    assert final.state is JobState.FAILED
    assert final.finished_at == clock()
    assert final.attempt == 3
    assert len(calls) == 3
    assert [e.attempt for e in final.errors] == [1, 2, 3]
    for error in final.errors:
        assert (error.error, error.message, error.worker) == ("RuntimeError", "flaky gateway", "w-test")
        assert error.traceback is not None
        assert "RuntimeError: flaky gateway" in error.traceback and "always_fails" in error.traceback
    assert [e.at for e in final.errors] == [clock() - 30 * SECOND, clock() - 20 * SECOND, clock()]
    assert worker.stats["retried"] == 2 and worker.stats["failed"] == 1

    clock.advance(timedelta(days=1))
    assert worker.work_once() == []


def test_error_not_in_on_fails_at_once(queue: Queue, clock: FakeClock) -> None:
    @queue.job("picky", retry=Retry(max_attempts=5, on=(ConnectionError,)))
    def picky(payload: dict[str, Any]) -> None:
        raise ValueError("bad data")

    job = picky.enqueue({})
    queue.worker(listen=False).work_once()
    failed = queue.get(job.id)
    assert (failed.state, failed.attempt, [e.error for e in failed.errors]) == (
        JobState.FAILED, 1, ["ValueError"])


def test_retry_that_would_pass_expiry_expires(queue: Queue, clock: FakeClock) -> None:
    @queue.job("hurry", retry=Retry(backoff=timedelta(minutes=1), jitter=timedelta(0)),
               expires_in=30 * SECOND)
    def hurry(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")

    job = hurry.enqueue({})
    queue.worker(listen=False).work_once()
    expired = queue.get(job.id)
    assert expired.state is JobState.EXPIRED
    assert [e.error for e in expired.errors] == ["RuntimeError"]


def test_cancel(queue: Queue, clock: FakeClock) -> None:
    @queue.job("opt.out")
    def opt_out(payload: dict[str, Any]) -> None:
        raise Cancel("patient opted out")

    job = opt_out.enqueue({})
    worker = queue.worker(listen=False)
    worker.work_once()
    cancelled = queue.get(job.id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at == clock()
    assert [(e.error, e.message) for e in cancelled.errors] == [("Cancel", "patient opted out")]
    assert worker.stats["cancelled"] == 1


def test_snooze_runs_again_later_without_counting_the_attempt(queue: Queue, clock: FakeClock) -> None:
    seen: list[int] = []

    @queue.job("later", retry=Retry(max_attempts=1))
    def later(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.append(ctx.attempt)
        if len(seen) < 3:
            raise Snooze(timedelta(minutes=5))

    job = later.enqueue({})
    worker = queue.worker(listen=False)
    worker.work_once()
    snoozed = queue.get(job.id)
    assert (snoozed.state, snoozed.attempt, snoozed.errors) == (JobState.SCHEDULED, 0, ())
    assert snoozed.run_at == clock() + timedelta(minutes=5)

    assert worker.work_once() == []
    clock.advance(timedelta(minutes=5))
    worker.work_once()
    clock.advance(timedelta(minutes=5))
    worker.work_once()
    done = queue.get(job.id)
    assert seen == [1, 1, 1], "a snoozed attempt is not counted, even with max_attempts=1"
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 1)
    assert worker.stats["snoozed"] == 2


def test_snooze_past_expiry_expires(queue: Queue, clock: FakeClock) -> None:
    @queue.job("later", expires_in=timedelta(minutes=1))
    def later(payload: dict[str, Any]) -> None:
        raise Snooze(timedelta(minutes=5))

    job = later.enqueue({})
    queue.worker(listen=False).work_once()
    assert queue.get(job.id).state is JobState.EXPIRED


def test_expired_job_is_never_started(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock,
                                      calls: Calls) -> None:
    job = ok.enqueue({"n": "late"}, expires_at=clock() + timedelta(minutes=1))
    fresh = ok.enqueue({"n": "fresh"}, expires_at=clock() + timedelta(hours=1))
    clock.advance(timedelta(minutes=1))
    worker = queue.worker(listen=False, concurrency=10)
    worker.work_once()
    worker.maintenance.run_once(clock())
    assert calls.items == [{"n": "fresh"}]
    assert queue.get(fresh.id).state is JobState.SUCCEEDED
    expired = queue.get(job.id)
    assert (expired.state, expired.attempt, expired.finished_at) == (JobState.EXPIRED, 0, clock())
    assert [e.error for e in expired.errors] == ["Expired"]
    clock.advance(timedelta(days=1))
    assert worker.work_once() == []
    assert calls.items == [{"n": "fresh"}]


def test_maintenance_expires_overdue_jobs(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    job = ok.enqueue({}, expires_at=clock() + timedelta(minutes=1))
    worker = queue.worker(listen=False)
    clock.advance(timedelta(seconds=59))
    assert worker.maintenance.run_once(clock()).expired == 0
    clock.advance(timedelta(seconds=1))
    assert worker.maintenance.run_once(clock()).expired == 1
    expired = queue.get(job.id)
    assert (expired.state, expired.attempt, expired.finished_at) == (JobState.EXPIRED, 0, clock())
    assert [e.error for e in expired.errors] == ["Expired"]
    assert worker.maintenance.run_once(clock()).expired == 0


def test_maintenance_expires_scheduled_jobs_whose_window_closed(queue: Queue, ok: JobKind[Any, Any],
                                                                clock: FakeClock) -> None:
    job = ok.enqueue({}, run_at=clock() + timedelta(minutes=10), expires_at=clock() + timedelta(minutes=20))
    worker = queue.worker(listen=False)
    clock.advance(timedelta(minutes=19))
    assert worker.maintenance.run_once(clock()).expired == 0
    clock.advance(timedelta(minutes=1))
    assert worker.maintenance.run_once(clock()).expired == 1
    assert queue.get(job.id).state is JobState.EXPIRED


def test_async_handlers(queue: Queue, clock: FakeClock) -> None:
    seen: list[int] = []

    @queue.job("async.ok")
    async def good(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(payload["n"])

    @queue.job("async.bad", retry=NO_JITTER)
    async def bad(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async boom")

    assert good.is_async and bad.is_async
    ok_job, bad_job = good.enqueue({"n": 5}), bad.enqueue({})
    queue.worker(listen=False).work_once()
    assert seen == [5]
    assert queue.get(ok_job.id).state is JobState.SUCCEEDED
    retried = queue.get(bad_job.id)
    assert (retried.state, [e.error for e in retried.errors]) == (JobState.SCHEDULED, ["RuntimeError"])


def test_async_handler_timeout(queue: Queue, clock: FakeClock) -> None:
    @queue.job("async.slow", retry=NO_JITTER, timeout=timedelta(milliseconds=50))
    async def slow(payload: dict[str, Any]) -> None:
        await asyncio.sleep(10)

    job = slow.enqueue({})
    started = time.monotonic()
    queue.worker(listen=False).work_once()
    assert time.monotonic() - started < 5
    timed_out = queue.get(job.id)
    assert timed_out.state is JobState.SCHEDULED
    assert [e.error for e in timed_out.errors] == ["HandlerTimeout"]


@pytest.mark.parametrize("kind_timeout", [None, timedelta(seconds=30)])
def test_a_timeout_error_of_the_async_handler_itself_is_its_error_not_the_kinds_timeout(
        queue: Queue, clock: FakeClock, kind_timeout: timedelta | None) -> None:
    @queue.job("async.own-timeout", retry=NO_JITTER, timeout=kind_timeout)
    async def calls_out(payload: dict[str, Any]) -> None:
        raise TimeoutError("the upstream call timed out")

    job = calls_out.enqueue({})
    queue.worker(listen=False).work_once()
    retried = queue.get(job.id)
    assert retried.state is JobState.SCHEDULED
    assert [(e.error, e.message) for e in retried.errors] == [("TimeoutError", "the upstream call timed out")]


def test_handler_with_a_second_argument_gets_a_job_context(queue: Queue, clock: FakeClock) -> None:
    contexts: list[JobContext] = []

    @queue.job("ctx", retry=Retry(max_attempts=2, backoff=SECOND, jitter=timedelta(0)))
    def with_ctx(payload: dict[str, Any], ctx: JobContext) -> None:
        contexts.append(ctx)
        if not ctx.is_last_attempt:
            raise RuntimeError("again")

    job = with_ctx.enqueue({"n": 1})
    worker = queue.worker(listen=False, worker_id="w-ctx")
    worker.work_once()
    clock.advance(SECOND)
    worker.work_once()
    assert [type(c) for c in contexts] == [JobContext, JobContext]
    assert [(c.job.id, c.attempt, c.is_last_attempt, c.worker_id) for c in contexts] == [
        (job.id, 1, False, "w-ctx"), (job.id, 2, True, "w-ctx")]
    assert contexts[0].job.payload == {"n": 1}
    assert not contexts[0].cancelled.is_set()
    assert queue.get(job.id).state is JobState.SUCCEEDED


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_system_exit_or_keyboard_interrupt_only_fails_that_job(
    queue: Queue, ok: JobKind[Any, Any], clock: FakeClock, error: type[BaseException]
) -> None:
    @queue.job("exits", retry=NO_JITTER, priority=1)
    def exits(payload: dict[str, Any]) -> None:
        raise error()

    bad = exits.enqueue({})
    good = ok.enqueue({})
    worker = queue.worker(listen=False)
    assert {j.id for j in worker.work_once()} == {bad.id, good.id}
    failed = queue.get(bad.id)
    assert failed.state is JobState.FAILED, "never retried, though attempts are left"
    assert [e.error for e in failed.errors] == [error.__name__]
    assert queue.get(good.id).state is JobState.SUCCEEDED


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def test_an_exception_that_cannot_be_printed_still_ends_the_attempt(queue: Queue, clock: FakeClock) -> None:
    @queue.job("unprintable", retry=NO_JITTER)
    def unprintable(payload: dict[str, Any]) -> None:
        raise UnprintableError()

    job = unprintable.enqueue({})
    worker = queue.worker(listen=False)
    try:
        worker.work_once()
    finally:
        after = queue.get(job.id)
    assert after.state is not JobState.RUNNING
    assert [e.error for e in after.errors] == ["UnprintableError"]


def test_error_message_with_a_nul_character_is_recorded(queue: Queue, ok: JobKind[Any, Any],
                                                         clock: FakeClock) -> None:
    @queue.job("binary", retry=NO_JITTER)
    def binary(payload: dict[str, Any]) -> None:
        raise ValueError("bad byte \x00 in input")

    bad, good = binary.enqueue({}), ok.enqueue({})
    worker = queue.worker(listen=False)
    try:
        worker.work_once()
    finally:
        after_bad, after_good = queue.get(bad.id), queue.get(good.id)
    assert after_good.state is JobState.SUCCEEDED
    assert after_bad.state is JobState.SCHEDULED
    assert [e.error for e in after_bad.errors] == ["ValueError"]


# ---------------------------------------------------------------- leases, rescue, guarded completion


def test_lease_rescue_makes_the_job_available_again(queue: Queue, ok: JobKind[Any, Any],
                                                    clock: FakeClock) -> None:
    job = ok.enqueue({})
    claim(queue, clock, owner="dead-worker")
    worker = queue.worker(listen=False)

    clock.advance(LEASE)
    assert worker.maintenance.run_once(clock()).rescued == 0, "the lease has not run out yet"
    clock.advance(SECOND)
    assert worker.maintenance.run_once(clock()).rescued == 1

    rescued = queue.get(job.id)
    assert rescued.state is JobState.AVAILABLE
    assert (rescued.attempt, rescued.lease_owner, rescued.lease_expires_at) == (1, None, None)
    assert [(e.error, e.attempt, e.worker) for e in rescued.errors] == [("LeaseExpired", 1, "dead-worker")]
    assert [j.id for j in worker.work_once()] == [job.id]
    done = queue.get(job.id)
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)


def test_lease_rescue_fails_the_job_when_attempts_are_exhausted(queue: Queue, clock: FakeClock) -> None:
    @queue.job("once", retry=Retry(max_attempts=1))
    def once(payload: dict[str, Any]) -> None:
        pass

    job = once.enqueue({})
    claim(queue, clock, owner="dead-worker")
    clock.advance(LEASE + SECOND)
    assert queue.worker(listen=False).maintenance.run_once(clock()).rescued == 1
    failed = queue.get(job.id)
    assert (failed.state, failed.finished_at) == (JobState.FAILED, clock())
    assert [e.error for e in failed.errors] == ["LeaseExpired"]


def test_lease_rescue_expires_the_job_when_its_window_closed(queue: Queue, ok: JobKind[Any, Any],
                                                             clock: FakeClock) -> None:
    job = ok.enqueue({}, expires_at=clock() + 10 * SECOND)
    claim(queue, clock, owner="dead-worker")
    clock.advance(LEASE + SECOND)
    queue.worker(listen=False).maintenance.run_once(clock())
    assert queue.get(job.id).state is JobState.EXPIRED


def test_stale_outcome_after_rescue_is_not_applied(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    job = ok.enqueue({})
    (claimed,) = claim(queue, clock, owner="slow-worker")
    clock.advance(LEASE + SECOND)
    queue.worker(listen=False).maintenance.run_once(clock())
    before = queue.get(job.id)

    stale = Outcome(job.id, claimed.attempt, "succeeded", finished_at=clock())
    assert queue.store.job_complete_many([stale], owner="slow-worker") == set()
    assert queue.get(job.id) == before


def test_stale_outcome_after_rescue_and_reclaim_is_not_applied(queue: Queue, ok: JobKind[Any, Any],
                                                               clock: FakeClock) -> None:
    job = ok.enqueue({})
    (first,) = claim(queue, clock, owner="slow-worker")
    clock.advance(LEASE + SECOND)
    queue.worker(listen=False).maintenance.run_once(clock())
    (second,) = claim(queue, clock, owner="other-worker")
    assert second.attempt == 2

    stale = Outcome(job.id, first.attempt, "failed", finished_at=clock())
    assert queue.store.job_complete_many([stale], owner="slow-worker") == set()
    # Even the same owner with the old attempt number is fenced off.
    assert queue.store.job_complete_many([stale], owner="other-worker") == set()
    running = queue.get(job.id)
    assert (running.state, running.lease_owner, running.attempt) == (JobState.RUNNING, "other-worker", 2)

    fresh = Outcome(job.id, second.attempt, "succeeded", finished_at=clock())
    assert queue.store.job_complete_many([fresh], owner="other-worker") == {job.id}
    assert queue.get(job.id).state is JobState.SUCCEEDED


def test_outcome_after_operator_cancel_is_not_applied(queue: Queue, ok: JobKind[Any, Any],
                                                      clock: FakeClock) -> None:
    job = ok.enqueue({})
    (claimed,) = claim(queue, clock, owner="w1")
    queue.cancel(job.id, reason="operator")
    late = Outcome(job.id, claimed.attempt, "succeeded", finished_at=clock())
    assert queue.store.job_complete_many([late], owner="w1") == set()
    cancelled = queue.get(job.id)
    assert cancelled.state is JobState.CANCELLED
    assert [(e.error, e.message) for e in cancelled.errors] == [("Cancelled", "operator")]


def test_batched_completion_applies_only_the_guarded_rows(queue: Queue, ok: JobKind[Any, Any],
                                                          clock: FakeClock) -> None:
    jobs = ok.enqueue_many([{"n": i} for i in range(3)])
    claimed = claim(queue, clock, owner="w1")
    outcomes = [Outcome(j.id, j.attempt, "succeeded", finished_at=clock()) for j in claimed]
    outcomes[1] = Outcome(claimed[1].id, claimed[1].attempt + 1, "succeeded", finished_at=clock())
    assert queue.store.job_complete_many(outcomes, owner="w1") == {jobs[0].id, jobs[2].id}
    assert [queue.get(j.id).state for j in jobs] == [JobState.SUCCEEDED, JobState.RUNNING, JobState.SUCCEEDED]


def test_heartbeat_extends_held_leases_and_reports_lost_ones(queue: Queue, ok: JobKind[Any, Any],
                                                             clock: FakeClock) -> None:
    kept, lost = ok.enqueue_many([{}, {}])
    claimed = {j.id: j.attempt for j in claim(queue, clock, owner="w1")}
    queue.cancel(lost.id)
    clock.advance(20 * SECOND)
    assert queue.store.job_heartbeat(owner="w1", held=claimed, lease=LEASE, now=clock()) == {kept.id}
    assert queue.get(kept.id).lease_expires_at == clock() + LEASE


# ---------------------------------------------------------------- claiming


def test_jobs_of_kinds_the_worker_does_not_know_are_left_alone(queue: Queue, ok: JobKind[Any, Any],
                                                               clean_db: str, clock: FakeClock) -> None:
    other_app = Queue(clean_db, clock=clock)

    @other_app.job("foreign")
    def foreign(payload: dict[str, Any]) -> None:
        raise AssertionError("must not run here")

    try:
        stranger = foreign.enqueue({})
        mine = ok.enqueue({})
        worker = queue.worker(listen=False)
        ran = [j.id for j in worker.work_once()]
        for _ in range(5):
            clock.advance(timedelta(hours=1))
            ran += [j.id for j in worker.work_once()]
        assert mine.id in ran
        left = queue.get(stranger.id)
        assert (left.state, left.attempt, left.errors) == (JobState.AVAILABLE, 0, ())
    finally:
        other_app.close()


def test_work_once_claims_jobs_enqueued_after_an_earlier_pass(queue: Queue, ok: JobKind[Any, Any]) -> None:
    worker = queue.worker(listen=False)
    assert worker.work_once() == []
    first = ok.enqueue({})
    assert [j.id for j in worker.work_once()] == [first.id]
    elsewhere = ok.enqueue({}, shard="district-9")
    assert [j.id for j in worker.work_once()] == [elsewhere.id]


def test_claim_takes_higher_priority_first(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    jobs = [ok.enqueue({"p": p}, priority=p) for p in (0, 5, -1, 5, 10)]
    claimed = claim(queue, clock, limit=10)
    assert [j.payload["p"] for j in claimed] == [10, 5, 5, 0, -1]
    assert claimed[1].id < claimed[2].id == jobs[3].id, "equal priority: older first"


def test_worker_runs_higher_priority_first(queue: Queue, ok: JobKind[Any, Any], calls: Calls) -> None:
    for p in (0, 3, -2, 7):
        ok.enqueue({"p": p}, priority=p)
    worker = queue.worker(listen=False, concurrency=1)
    while worker.work_once():
        pass
    assert [c["p"] for c in calls.items] == [7, 3, 0, -2]


def test_equal_priority_runs_oldest_run_at_first(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    late = ok.enqueue({"n": "late"}, run_at=clock() + 2 * SECOND)
    early = ok.enqueue({"n": "early"}, run_at=clock() + SECOND)
    clock.advance(3 * SECOND)
    assert [j.id for j in claim(queue, clock)] == [early.id, late.id]


def test_claim_never_returns_more_than_the_limit(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock,
                                                 db: DB) -> None:
    ok.enqueue_many([{"n": i} for i in range(50)])
    assert len(claim(queue, clock, limit=7)) == 7
    assert states(db) == {"running": 7, "available": 43}
    assert claim(queue, clock, limit=0) == []
    assert states(db)["running"] == 7


def test_work_once_claims_no_more_than_concurrency(queue: Queue, ok: JobKind[Any, Any], db: DB) -> None:
    ok.enqueue_many([{"n": i} for i in range(10)])
    assert len(queue.worker(listen=False, concurrency=3).work_once()) == 3
    assert states(db) == {"succeeded": 3, "available": 7}


def test_claim_skips_future_jobs(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    job = ok.enqueue({}, run_at=clock() + SECOND)
    assert claim(queue, clock) == []
    clock.advance(SECOND)
    assert [j.id for j in claim(queue, clock)] == [job.id]


def test_claim_by_shard(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    a = ok.enqueue({}, shard="district-1")
    ok.enqueue({}, shard="district-2")
    claimed = claim(queue, clock, shard="district-1")
    assert [j.id for j in claimed] == [a.id]


def test_worker_serves_only_its_shards(queue: Queue, ok: JobKind[Any, Any]) -> None:
    mine = ok.enqueue({}, shard="district-1")
    other = ok.enqueue({}, shard="district-2")
    worker = queue.worker(listen=False, shards=["district-1"])
    assert [j.id for j in worker.work_once()] == [mine.id]
    assert worker.work_once() == []
    assert queue.get(other.id).state is JobState.AVAILABLE


def test_worker_without_shards_serves_every_shard(queue: Queue, ok: JobKind[Any, Any]) -> None:
    jobs = [ok.enqueue({}, shard=s) for s in ("a", "b", "default")]
    worker = queue.worker(listen=False, concurrency=10)
    assert {j.id for j in worker.work_once()} == {j.id for j in jobs}
    assert all(queue.get(j.id).state is JobState.SUCCEEDED for j in jobs)


def test_two_claimers_never_claim_the_same_job(queue: Queue, ok: JobKind[Any, Any], clock: FakeClock) -> None:
    all_ids = {j.id for j in ok.enqueue_many([{"n": i} for i in range(2000)])}
    got: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def claimer(owner: str) -> None:
        try:
            barrier.wait()
            while batch := claim(queue, clock, owner=owner, limit=25):
                got[owner].extend(j.id for j in batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(owner,)) for owner in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    a, b = set(got["a"]), set(got["b"])
    assert len(a) == len(got["a"]) and len(b) == len(got["b"])
    assert a & b == set()
    assert a | b == all_ids
    assert a and b, "both claimers got work"


# ---------------------------------------------------------------- pruning


def test_pruning_deletes_finished_jobs_older_than_retention(queue: Queue, ok: JobKind[Any, Any],
                                                            clock: FakeClock, db: DB) -> None:
    @queue.job("doomed", retry=Retry(max_attempts=1))
    def doomed(payload: dict[str, Any]) -> None:
        raise RuntimeError("no")

    done, gone_wrong = ok.enqueue({}), doomed.enqueue({})
    waiting = ok.enqueue({}, run_at=clock() + timedelta(days=30))
    worker = queue.worker(listen=False, retention={JobState.SUCCEEDED: timedelta(hours=1),
                                                   JobState.FAILED: timedelta(days=1)})
    worker.work_once()
    assert states(db) == {"succeeded": 1, "failed": 1, "available": 1}

    clock.advance(timedelta(minutes=59))
    assert worker.maintenance.run_once(clock()).pruned == {}
    clock.advance(timedelta(minutes=2))
    assert worker.maintenance.run_once(clock()).pruned == {"succeeded": 1}
    remaining = {r[0] for r in db.execute("SELECT id FROM finejobs_jobs")}
    assert remaining == {gone_wrong.id, waiting.id}
    assert done.id not in remaining

    clock.advance(timedelta(days=1))
    assert worker.maintenance.run_once(clock()).pruned == {"failed": 1}
    assert {r[0] for r in db.execute("SELECT id FROM finejobs_jobs")} == {waiting.id}


# ---------------------------------------------------------------- real threads, real clock


@pytest.fixture
def real_queue(clean_db: str) -> Iterator[Queue]:
    queue = Queue(clean_db)
    yield queue
    queue.close()


def finejobs_threads(before: frozenset[threading.Thread] = frozenset()) -> list[str]:
    """finejobs threads alive now that were not alive in ``before`` (other tests may leave hung handlers)."""
    return [t.name for t in threading.enumerate()
            if t.name.startswith("finejobs-") and t.is_alive() and t not in before]


def test_threaded_worker_processes_everything_once_and_stops_cleanly(real_queue: Queue, db: DB) -> None:
    seen: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    @real_queue.job("count")
    def count(payload: dict[str, Any]) -> None:
        with lock:
            seen[payload["n"]] += 1

    count.enqueue_many([{"n": i} for i in range(500)])
    before = frozenset(threading.enumerate())
    worker = real_queue.worker(concurrency=8, poll_interval=0.1)
    worker.start()
    try:
        wait_until(lambda: states(db) == {"succeeded": 500}, what="500 jobs to succeed")
    finally:
        worker.stop(timeout=15)
    assert worker._thread is not None and not worker._thread.is_alive()
    assert seen == collections.Counter(range(500))
    assert worker.stats["succeeded"] == 500
    assert worker._running == {} and worker.held() == {}
    wait_until(lambda: finejobs_threads(before) == [], timeout=5,
               what=f"finejobs threads to end: {finejobs_threads(before)}")


def test_threaded_worker_survives_an_exception_that_cannot_be_printed(real_queue: Queue) -> None:
    @real_queue.job("unprintable")
    def unprintable(payload: dict[str, Any]) -> None:
        raise UnprintableError()

    job = unprintable.enqueue({})
    worker = real_queue.worker(concurrency=2, poll_interval=0.05, listen=False, lease=timedelta(seconds=0.3))
    worker.start()
    try:
        wait_until(lambda: real_queue.get(job.id).attempt == 1, timeout=5, what="the claim")
        worker.maintenance.run_once(real_queue.clock())
        wait_until(lambda: real_queue.get(job.id).state is not JobState.RUNNING, timeout=1.5,
                   what="the attempt to end")
        time.sleep(0.1)  # the outcome's log line comes right after the write
        assert worker._fatal is None, f"a worker service died: {worker._fatal}"
        assert worker._thread is not None and worker._thread.is_alive()
    finally:
        worker.stop(timeout=5)
    assert [e.error for e in real_queue.get(job.id).errors] == ["UnprintableError"]


def test_threaded_worker_handler_timeout_while_other_jobs_go_on(real_queue: Queue, db: DB) -> None:
    told: list[bool] = []

    @real_queue.job("slow", timeout=timedelta(milliseconds=200),
                    retry=Retry(max_attempts=2, backoff=timedelta(hours=1), max_backoff=timedelta(hours=1),
                                jitter=timedelta(0)))
    def slow(payload: dict[str, Any], ctx: JobContext) -> None:
        time.sleep(1.0)
        told.append(ctx.cancelled.is_set())

    @real_queue.job("fast")
    def fast(payload: dict[str, Any]) -> None:
        pass

    slow_job = slow.enqueue({})
    fast.enqueue_many([{"n": i} for i in range(20)])
    worker = real_queue.worker(concurrency=4, poll_interval=0.05, listen=False)
    worker.start()
    try:
        wait_until(lambda: bool(real_queue.get(slow_job.id).errors), timeout=10, what="the timeout")
        still_sleeping = not told
        wait_until(lambda: states(db).get("succeeded") == 20, timeout=10, what="the fast jobs")
    finally:
        worker.stop(timeout=15)
    assert still_sleeping, "the timeout is recorded while the handler still sleeps"
    timed_out = real_queue.get(slow_job.id)
    assert [e.error for e in timed_out.errors] == ["HandlerTimeout"]
    assert timed_out.state is JobState.SCHEDULED, "retried an hour later; the late success is discarded"
    assert timed_out.attempt == 1
    assert worker.stats["discarded"] == 0
    assert states(db) == {"succeeded": 20, "available": 1}
    assert told == [True], "the handler's context was told it timed out"
