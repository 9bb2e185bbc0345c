"""The hot path on Citus with real in-process workers: enqueue (single, bulk across shards, unique keys, on a
caller's transaction, NOTIFY), workers with and without shards, batched completion, heartbeat, rescue, expiry,
pruning, schedules (one job per tick with several workers), stats and the operators' job actions."""

from __future__ import annotations

import collections
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import finejobs
from finejobs import JobState, Queue, outcomes
from finejobs.admin import Admin
from finejobs.filters import JobFilter
from finejobs.store import libpq_url
from tests.acceptance.helpers import wait_for

SHARDS = [f"district-{i}" for i in range(8)]


@pytest.fixture
def real_queue(clean_db: str) -> Any:
    q = Queue(clean_db)  # the real clock: workers run for real
    yield q
    q.close()


def _states(url: str) -> dict[str, int]:
    with psycopg.connect(libpq_url(url)) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM finejobs_jobs GROUP BY state").fetchall())


def test_workers_with_and_without_shards_run_every_job_once(real_queue: Queue, clean_db: str) -> None:
    runs: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    @real_queue.job("work")
    def work(payload: dict[str, Any]) -> None:
        with lock:
            runs[payload["n"]] += 1

    made = work.enqueue_many([finejobs.JobSpec({"n": i}, shard=SHARDS[i % 8]) for i in range(400)])
    for i in range(400, 440):  # single enqueues, with unique keys (a second enqueue returns the holder)
        job = work.enqueue({"n": i}, shard=SHARDS[i % 8], unique_key=f"u{i}")
        assert work.enqueue({"n": i}, shard=SHARDS[i % 8], unique_key=f"u{i}").id == job.id
        made.append(job)
    assert len({j.id for j in made}) == 440
    workers = [real_queue.worker(concurrency=8, poll_interval=0.05, maintenance_interval=0.2),
               real_queue.worker(concurrency=4, poll_interval=0.05, shards=SHARDS[:2]),
               real_queue.worker(concurrency=4, poll_interval=0.05, shards=["district-7"])]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: _states(clean_db) == {"succeeded": 440}, timeout=60, what="every job succeeded")
    finally:
        for w in workers:
            w.stop(timeout=30)
    assert all(w._fatal is None for w in workers)
    assert set(runs) == set(range(440)) and set(runs.values()) == {1}


def test_enqueue_on_a_callers_transaction_exists_only_if_it_commits(real_queue: Queue) -> None:
    @real_queue.job("tx")
    def tx(payload: dict[str, Any]) -> None:
        pass

    engine = sa.create_engine(real_queue.store.engine.url)
    try:
        with engine.connect() as conn:
            kept = tx.enqueue({"n": 1}, shard="district-1", conn=conn)
            conn.commit()
            dropped = tx.enqueue({"n": 2}, shard="district-2", conn=conn)
            conn.rollback()
    finally:
        engine.dispose()
    assert real_queue.get(kept.id).state is JobState.AVAILABLE
    with pytest.raises(finejobs.JobNotFound):
        real_queue.get(dropped.id)


def test_enqueue_notifies_the_listeners_of_the_coordinator(real_queue: Queue) -> None:
    @real_queue.job("note")
    def note(payload: dict[str, Any]) -> None:
        pass

    listener = real_queue.store.listen()
    try:
        note.enqueue_many([finejobs.JobSpec({}, shard=s) for s in SHARDS[:3]])
        got: list[str] = []
        listener.wait(2.0, got.append, stop=lambda: len(got) >= 3)
    finally:
        listener.close()
    assert sorted(got) == SHARDS[:3]


def test_heartbeat_rescue_expiry_and_pruning(queue: Queue) -> None:
    store, now = queue.store, queue.clock()

    @queue.job("m")
    def m(payload: dict[str, Any]) -> None:
        pass

    m.enqueue_many([finejobs.JobSpec({}, shard=s) for s in SHARDS[:4]])
    m.enqueue({}, shard="district-5", expires_at=now + timedelta(seconds=5))
    claimed = store.job_claim_shards(owner="dead", shards=SHARDS[:4], kinds=["m"], share=5,
                                     lease=timedelta(seconds=10), now=now)
    assert sorted(j.shard for j in claimed) == SHARDS[:4]
    held = {j.id: j.attempt for j in claimed}
    assert store.job_heartbeat(owner="dead", held=held, lease=timedelta(seconds=20), now=now) == set(held)
    assert store.job_heartbeat(owner="other", held=held, lease=timedelta(seconds=20), now=now) == set()
    stale = {claimed[0].id: claimed[0].attempt + 1}
    assert store.job_heartbeat(owner="dead", held=stale, lease=timedelta(seconds=20), now=now) == set()
    assert store.job_rescue_expired_leases(now=now + timedelta(seconds=15)) == {}, "leases were extended"
    rescued = store.job_rescue_expired_leases(now=now + timedelta(seconds=21))
    assert set(rescued) == set(held) and set(rescued.values()) == {JobState.AVAILABLE}
    job = queue.get(claimed[0].id)
    assert (job.errors[-1].error, job.errors[-1].worker, job.errors[-1].attempt) == ("LeaseExpired", "dead", 1)
    assert store.job_expire_overdue(now=now + timedelta(seconds=30)) == 1
    later = now + timedelta(days=30)
    again = store.job_claim_shards(owner="w", shards=SHARDS[:4], kinds=["m"], share=5, lease=timedelta(seconds=10),
                                   now=later)
    assert store.job_complete_many([outcomes.succeeded(j, now=later) for j in again], owner="w") \
        == {j.id for j in again}
    pruned = store.job_prune_finished(retention={JobState.SUCCEEDED: timedelta(days=1),
                                                 JobState.EXPIRED: timedelta(days=1)},
                                      now=later + timedelta(days=2))
    assert pruned == {"succeeded": 4, "expired": 1}
    assert queue.stats().total == 0


def test_operators_list_show_retry_and_cancel_on_citus(queue: Queue) -> None:
    @queue.job("op")
    def op(payload: dict[str, Any]) -> None:
        pass

    jobs = op.enqueue_many([finejobs.JobSpec({"n": i}, shard=SHARDS[i % 3]) for i in range(6)])
    admin = Admin(queue, actor="test")
    assert sorted(j.id for j in admin.jobs(JobFilter()).jobs) == sorted(j.id for j in jobs)
    cancelled = queue.cancel(jobs[0].id, "no longer needed")
    assert cancelled.state is JobState.CANCELLED and cancelled.errors[-1].message == "no longer needed"
    assert queue.retry(jobs[0].id).state is JobState.AVAILABLE
    assert admin.job(jobs[1].id).id == jobs[1].id
    stats = admin.stats()
    assert stats.by_state["available"] == 6 and set(stats.by_shard) == set(SHARDS[:3])


def test_several_schedulers_make_exactly_one_job_per_tick(real_queue: Queue, clean_db: str) -> None:
    @real_queue.job("tick")
    def tick(payload: dict[str, Any]) -> None:
        pass

    real_queue.schedule("every-second", tick, finejobs.Every(seconds=1), shard="district-3")
    workers = [real_queue.worker(concurrency=2, poll_interval=0.05, schedule_interval=0.05, listen=False)
               for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(5)
    finally:
        for w in workers:
            w.stop(timeout=30)
    with psycopg.connect(libpq_url(clean_db)) as conn:
        ticks = conn.execute("SELECT fire_at, count(*) FROM finejobs_jobs WHERE schedule_id IS NOT NULL "
                             "GROUP BY fire_at").fetchall()
    assert len(ticks) >= 3, ticks
    assert {n for _, n in ticks} == {1}, ticks
    assert all(w._fatal is None for w in workers)
    assert datetime.now(UTC) > max(at for at, _ in ticks)
