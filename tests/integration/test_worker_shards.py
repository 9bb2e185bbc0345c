"""Which shards a worker claims from, on a real PostgreSQL: fairness, globs, all shards, named shards.

Workers are driven step by step with ``work_once()`` (no threads, no sleeps) and the FakeClock. Tests that
add partitions work in a database of their own: the session database must never keep extra partitions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from finejobs import JobKind, JobState, Queue
from finejobs.runtime.worker import Worker
from finejobs.store import libpq_url
from finejobs.testing import FakeClock

DB = psycopg.Connection[tuple[Any, ...]]
LEASE = timedelta(seconds=30)


def waiting(db: DB) -> dict[str, int]:
    """Available jobs by shard."""
    return dict(db.execute("SELECT shard, count(*) FROM finejobs_jobs WHERE state = 'available' "
                           "GROUP BY shard").fetchall())


def states_by_shard(db: DB) -> dict[tuple[str, str], int]:
    return {(shard, state): n for shard, state, n in db.execute(
        "SELECT shard, state, count(*) FROM finejobs_jobs GROUP BY shard, state").fetchall()}


def make_worker(queue: Queue, **options: Any) -> Worker:
    worker = queue.worker(listen=False, run_scheduler=False, **options)
    assert isinstance(worker, Worker)
    return worker


@pytest.fixture
def noop(queue: Queue) -> JobKind[Any, Any]:
    @queue.job("noop")
    def handle(payload: dict[str, Any]) -> None:
        pass

    return handle


@pytest.fixture
def fresh_db(fresh: Queue, empty_database_url: str) -> Iterator[DB]:
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as conn:
        yield conn


# ---------------------------------------------------------------- fairness


@pytest.mark.parametrize("shards", [["big", "small"], None, ["*"]], ids=["named", "all", "glob"])
def test_a_backlog_of_100k_does_not_starve_a_shard_with_10(
    queue: Queue, noop: JobKind[Any, Any], db: DB, shards: list[str] | None
) -> None:
    started = time.monotonic()
    for _ in range(10):
        assert len(noop.enqueue_many([{}] * 10_000, shard="big")) == 10_000
    enqueue_seconds = time.monotonic() - started
    assert enqueue_seconds < 20, f"100k jobs took {enqueue_seconds:.1f}s to enqueue"  # ~5s on an idle machine
    small = {j.id for j in noop.enqueue_many([{"n": i} for i in range(10)], shard="small")}  # after the backlog
    assert waiting(db) == {"big": 100_000, "small": 10}

    worker = make_worker(queue, shards=shards, concurrency=4)
    rounds: list[Counter[str]] = []
    done_small: set[int] = set()
    while len(done_small) < 10 and len(rounds) < 6:
        jobs = worker.work_once()
        rounds.append(Counter(j.shard for j in jobs))
        done_small |= {j.id for j in jobs if j.shard == "small"}

    assert done_small == small, f"small jobs left after {len(rounds)} rounds: {rounds}"
    assert len(rounds) <= 6
    for i, got in enumerate(rounds):
        assert got["big"] > 0 and got["small"] > 0, f"round {i + 1} did not claim from both shards: {rounds}"
        assert got == {"big": 2, "small": 2}, f"round {i + 1} did not split the 4 slots equally: {rounds}"
    assert states_by_shard(db)[("small", "succeeded")] == 10
    assert waiting(db)["big"] > 99_000
    assert "small" not in waiting(db)

    # With small drained, the next round gives every slot to the backlog.
    assert Counter(j.shard for j in worker.work_once()) == {"big": 4}


# ---------------------------------------------------------------- globs


def test_glob_is_matched_against_existing_shards_and_again_as_shards_appear(
    fresh: Queue, fresh_db: DB
) -> None:
    ok = fresh.kind("ok")
    worker = make_worker(fresh, shards=["district-*"], shard_refresh_interval=0, concurrency=10)
    assert worker.work_once() == []
    assert worker.maintenance_shards() == []

    first = {j.id for j in ok.enqueue_many([{}] * 3, shard="district-1")}
    other = ok.enqueue({}, shard="other")
    assert {j.id for j in worker.work_once()} == first
    assert worker.work_once() == []  # "other" does not match

    new = ok.enqueue({}, shard="district-9")  # a brand-new shard, no partition
    assert [j.id for j in worker.work_once()] == [new.id]

    assert fresh.store.shard_add(["district-7"]) == ["district-7"]
    covered = worker.maintenance_shards() or []
    assert "district-7" in covered  # a partition makes it known, waiting jobs or not
    assert all(s.startswith("district-") for s in covered), covered
    added = ok.enqueue({}, shard="district-7")
    assert [j.id for j in worker.work_once()] == [added.id]

    later = ok.enqueue({}, shard="district-12")
    covered = worker.maintenance_shards() or []
    assert {"district-12", "district-7"} <= set(covered) and "other" not in covered, covered
    assert [j.id for j in worker.work_once()] == [later.id]

    assert fresh.get(other.id).state is JobState.AVAILABLE
    assert worker.stats["succeeded"] == 6
    assert make_worker(fresh, shards=None).maintenance_shards() is None
    assert make_worker(fresh, shards=["other"]).maintenance_shards() == ["other"]


def test_several_globs_and_names_together(fresh: Queue, fresh_db: DB) -> None:
    ok = fresh.kind("ok")
    fresh.store.shard_add(["district-11", "district-12"])
    for shard in ("district-1", "district-11", "district-12", "district-19", "alerts", "other"):
        ok.enqueue({}, shard=shard)
    worker = make_worker(fresh, shards=["district-1[1-2]", "alert?", "district-1"], shard_refresh_interval=0)
    assert worker.maintenance_shards() == ["alerts", "district-1", "district-11", "district-12"]
    assert sorted(j.shard for j in worker.work_once()) == ["alerts", "district-1", "district-11", "district-12"]
    assert waiting(fresh_db) == {"district-19": 1, "other": 1}


def test_glob_worker_maintenance_rescues_a_lost_lease_in_a_matched_shard(
    fresh: Queue, fresh_db: DB, clock: FakeClock
) -> None:
    """A worker of ``district-*`` claims the only job of district-9 (no partition) and dies; the next one
    must rescue it once the lease has expired."""
    ok = fresh.kind("ok")
    job = ok.enqueue({}, shard="district-9")
    (claimed,) = fresh.store.job_claim(owner="dead", shard="district-9", kinds=["ok"], limit=1, lease=LEASE,
                                       now=clock())
    assert claimed.id == job.id
    clock.advance(LEASE + timedelta(seconds=1))

    worker = make_worker(fresh, shards=["district-*"], shard_refresh_interval=0)
    assert "district-9" in (worker.maintenance_shards() or []), (
        "a glob worker's maintenance does not cover district-9, which matches its glob but has only a "
        "running job (no partition, nothing waiting)")
    worker.maintenance.run_once(clock())
    assert fresh.get(job.id).state is JobState.AVAILABLE
    assert [j.id for j in worker.work_once()] == [job.id]


# ---------------------------------------------------------------- all shards, named shards


def test_a_worker_without_shards_serves_every_shard(queue: Queue, noop: JobKind[Any, Any], db: DB) -> None:
    ids = {shard: {j.id for j in noop.enqueue_many([{}] * 3, shard=shard)}
           for shard in ("default", "district-1", "alerts")}
    worker = make_worker(queue, concurrency=10)
    assert worker.shards is None
    claimed = worker.work_once()
    assert sorted(j.shard for j in claimed) == ["alerts"] * 3 + ["default"] * 3 + ["district-1"] * 3
    assert waiting(db) == {}
    assert {shard for shard, state in states_by_shard(db) if state == "succeeded"} == set(ids)
    assert worker.stats["succeeded"] == 9

    late = noop.enqueue({}, shard="brand-new")  # a shard that appeared after the worker was made
    assert [j.id for j in worker.work_once()] == [late.id]


def test_a_worker_with_named_shards_claims_only_those(queue: Queue, noop: JobKind[Any, Any], db: DB) -> None:
    for shard in ("district-1", "district-2", "district-3", "default"):
        noop.enqueue_many([{}] * 3, shard=shard)
    worker = make_worker(queue, shards=["district-1", "district-3"], concurrency=10)
    assert worker.maintenance_shards() == ["district-1", "district-3"]
    claimed = worker.work_once()
    assert sorted(j.shard for j in claimed) == ["district-1"] * 3 + ["district-3"] * 3
    assert worker.work_once() == []
    assert waiting(db) == {"district-2": 3, "default": 3}
    assert states_by_shard(db)[("district-1", "succeeded")] == 3
    assert states_by_shard(db)[("district-3", "succeeded")] == 3


def test_a_named_shard_worker_splits_its_slots_fairly(queue: Queue, noop: JobKind[Any, Any], db: DB) -> None:
    for shard in ("a", "b", "c"):
        noop.enqueue_many([{}] * 20, shard=shard)
    worker = make_worker(queue, shards=["a", "b", "c"], concurrency=6)
    for _ in range(3):
        assert Counter(j.shard for j in worker.work_once()) == {"a": 2, "b": 2, "c": 2}
    assert waiting(db) == {"a": 14, "b": 14, "c": 14}


# ---------------------------------------------------------------- one statement for several shards


def test_claim_shards_takes_at_most_its_share_from_each_shard_in_one_statement(fresh: Queue, fresh_db: DB,
                                                                                 clock: FakeClock) -> None:
    fresh.store.shard_add(["p-a", "p-b"])  # two with partitions, one in the default partition
    ok = fresh.kind("ok")
    for shard, n in (("p-a", 5), ("p-b", 1), ("p-c", 3), ("p-d", 4)):
        ok.enqueue_many([{}] * n, shard=shard)
    got = fresh.store.job_claim_shards(owner="w1", shards=["p-a", "p-b", "p-c"], kinds=["ok"], share=2,
                                       lease=timedelta(seconds=30), now=clock())
    assert Counter(job.shard for job in got) == {"p-a": 2, "p-b": 1, "p-c": 2}  # p-d not asked for
    assert all(job.state is JobState.RUNNING and job.lease_owner == "w1" for job in got)
    running = fresh_db.execute("SELECT shard, count(*) FROM finejobs_jobs WHERE state = 'running' GROUP BY 1")
    assert dict(running.fetchall()) == {"p-a": 2, "p-b": 1, "p-c": 2}
    # The oldest first within each shard: the next claim takes the rest, never a job twice.
    again = fresh.store.job_claim_shards(owner="w2", shards=["p-a", "p-b", "p-c"], kinds=["ok"], share=5,
                                         lease=timedelta(seconds=30), now=clock())
    assert Counter(job.shard for job in again) == {"p-a": 3, "p-c": 1}
    assert not {job.id for job in got} & {job.id for job in again}


def test_a_worker_with_more_shards_than_free_slots_visits_every_shard(fresh: Queue, clock: FakeClock) -> None:
    ok = fresh.kind("ok")
    shards = [f"s-{i:02d}" for i in range(10)]
    for shard in shards:
        ok.enqueue_many([{}] * 3, shard=shard)
    worker = make_worker(fresh, shards=shards, concurrency=4)
    seen: set[str] = set()
    for _ in range(3):  # 4 slots a round, 10 shards: every shard within 3 rounds
        seen |= {job.shard for job in worker.work_once()}
    assert seen == set(shards)


# ---------------------------------------------------------------- windows of shards


def test_with_many_shards_a_claim_statement_takes_a_window_of_them_with_a_batch_each(
        queue: Queue, noop: JobKind[Any, Any], db: DB) -> None:
    shards = [f"w-{i:02d}" for i in range(16)]
    for shard in shards:
        noop.enqueue_many([{}] * 30, shard=shard)
    worker = make_worker(queue, shards=shards, concurrency=50)  # window: 50 // 10 = 5 shards, 10 jobs each
    rounds = [Counter(j.shard for j in worker.work_once()) for _ in range(4)]
    for got in rounds:
        assert sorted(got.values()) == [10] * 5, rounds
    # The rounds take the next windows in turn: 4 rounds of 5 shards cover all 16 (the fourth wraps round).
    assert set().union(*rounds) == set(shards), rounds
    assert not set(rounds[0]) & set(rounds[1]) and not set(rounds[1]) & set(rounds[2]), rounds


def test_a_round_goes_on_past_windows_of_empty_shards_to_the_work(queue: Queue, noop: JobKind[Any, Any],
                                                                  db: DB) -> None:
    shards = [f"e-{i:02d}" for i in range(16)]
    for busy in (shards[3], shards[11]):  # whichever window the worker starts at, most of them are empty
        noop.enqueue_many([{}] * 40, shard=busy)
    worker = make_worker(queue, shards=shards, concurrency=50)
    got = Counter(j.shard for j in worker.work_once())
    assert sum(got.values()) == 50 and set(got) == {shards[3], shards[11]}, got  # one round, every free slot
    assert sum(waiting(db).values()) == 80 - 50
