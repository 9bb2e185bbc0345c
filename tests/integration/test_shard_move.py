"""Moving a shard between databases (finejobs.shard_move.move_shard) on a real PostgreSQL.

Two fresh migrated databases of this module's own, ``a`` and ``b``. The OLD shard map places district-3 on
``a``, the NEW one on ``b`` (both declare both databases, default ``a``): moving district-3 is what an
operator does between deploying the two maps. Most tests drive the stores step by step with a FakeClock;
the live test runs real worker threads on both databases while jobs keep arriving through both maps.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.rows import dict_row

from finejobs import Queue, Retry, Worker, devdb
from finejobs.outcomes import failed, succeeded
from finejobs.shard_move import move_shard
from finejobs.sharding import ShardMap
from finejobs.store import libpq_url
from finejobs.testing import FakeClock

SHARD = "district-3"
KIND = "visit"
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
LEASE = timedelta(seconds=30)
NO_JITTER = Retry(max_attempts=4, backoff=10 * SECOND, max_backoff=HOUR, jitter=timedelta(0))
# What a moved job must keep (its id is new in the target; moved_from names the old one).
COPIED = ("kind", "shard", "payload", "priority", "run_at", "expires_at", "attempt", "max_attempts", "unique_key",
          "errors", "created_at", "claims", "trace")


@dataclass
class Databases:
    a: str
    b: str

    @property
    def old(self) -> ShardMap:
        return ShardMap({"a": self.a, "b": self.b}, {"a": [SHARD]}, default="a")

    @property
    def new(self) -> ShardMap:
        return ShardMap({"a": self.a, "b": self.b}, {"b": [SHARD]}, default="a")


@pytest.fixture(scope="module")
def migrated_pair(server_url: str) -> Iterator[Databases]:
    """Two brand-new migrated databases of this module's own, dropped after its tests."""
    urls: list[str] = []
    try:
        for _ in range(2):
            urls.append(devdb.create_database(server_url, prefix="finejobs_move"))
            q = Queue(urls[-1])
            q.migrate()
            q.close()
        yield Databases(*urls)
    finally:
        for url in urls:
            devdb.drop_database(server_url, url)


@pytest.fixture
def dbs(migrated_pair: Databases) -> Databases:
    """The two databases, empty: no jobs, no outbox rows, ids from 1 again."""
    for url in (migrated_pair.a, migrated_pair.b):
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("TRUNCATE finejobs_jobs, finejobs_shard_moves, finejobs_schedules RESTART IDENTITY")
    return migrated_pair


def make_queue(shard_map: ShardMap, handler: Callable[[dict[str, Any]], None] | None = None,
               clock: FakeClock | None = None) -> Queue:
    """A Queue on ``shard_map`` with the kind "visit", routed by its payload's district."""
    q = Queue(shard_map=shard_map, clock=clock) if clock is not None else Queue(shard_map=shard_map)

    @q.job(KIND, shard_by="district", retry=NO_JITTER)
    def visit(payload: dict[str, Any]) -> None:
        if handler is not None:
            handler(payload)

    return q


@pytest.fixture
def queues(dbs: Databases, clock: FakeClock) -> Iterator[tuple[Queue, Queue]]:
    """(old, new): an app still routing with the OLD map, and one (and the mover) with the NEW map."""
    old, new = make_queue(dbs.old, clock=clock), make_queue(dbs.new, clock=clock)
    yield old, new
    old.close()
    new.close()


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(libpq_url(url), autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def jobs(url: str, where: str = "true", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return query(url, f"SELECT * FROM finejobs_jobs WHERE {where} ORDER BY id", params)


def outbox(url: str) -> int:
    return int(query(url, "SELECT count(*) AS n FROM finejobs_shard_moves")[0]["n"])


def unfinished(url: str) -> int:
    sql = "SELECT count(*) AS n FROM finejobs_jobs WHERE shard = %s AND state IN ('available', 'running')"
    return int(query(url, sql, (SHARD,))[0]["n"])


def ns(rows: list[dict[str, Any]]) -> list[int]:
    return sorted(r["payload"]["n"] for r in rows)


# ---------------------------------------------------------------------------------------------- basic


def test_move_copies_waiting_jobs_and_leaves_running_finished_and_other_shards(
        dbs: Databases, queues: tuple[Queue, Queue], clock: FakeClock) -> None:
    old, new = queues
    a = old.store_of("a")
    t0 = clock()
    # Jobs that will run (one stays running), finish, or fail once and wait for their retry.
    old.enqueue(KIND, {"district": 3, "n": 1}, priority=9)  # stays running
    old.enqueue(KIND, {"district": 3, "n": 2}, priority=8)  # succeeds
    old.enqueue(KIND, {"district": 3, "n": 3}, priority=7, unique_key="retry-me",
                expires_at=t0 + 5 * HOUR)  # fails once: waits again with attempt 1 and an error
    claimed = a.job_claim(owner="w-a", shard=SHARD, kinds=[KIND], limit=3, lease=LEASE, now=t0)
    assert [j.payload["n"] for j in claimed] == [1, 2, 3]
    running, done, retried = claimed
    applied = a.job_complete_many([
        succeeded(done, now=t0),
        failed(retried, RuntimeError("gateway down"), retry=NO_JITTER, now=t0, worker="w-a"),
    ], owner="w-a")
    assert applied == {done.id, retried.id}
    # Waiting jobs: due and scheduled, with every option set on some.
    old.enqueue(KIND, {"district": 3, "n": 4})
    old.enqueue(KIND, {"district": 3, "n": 5}, priority=-3, unique_key="k5", expires_at=t0 + 2 * HOUR)
    old.enqueue(KIND, {"district": 3, "n": 6}, run_at=t0 + HOUR)
    old.enqueue(KIND, {"district": 3, "n": 7}, run_at=t0 + 3 * HOUR, priority=4, unique_key="k7")
    other = old.enqueue(KIND, {"district": 4, "n": 8})  # another shard on A: stays
    assert other.shard == "district-4" and new.shard_map.database_for("district-4") == "a"

    before = {r["id"]: r for r in jobs(dbs.a, "shard = %s AND state = 'available'", (SHARD,))}
    assert ns(list(before.values())) == [3, 4, 5, 6, 7]
    history_before = jobs(dbs.a, "shard = %s AND state <> 'available'", (SHARD,))

    report = move_shard(new, SHARD, to="b", wait=0)

    assert report.moved == {"a": 5}
    assert report.merged == 0
    assert report.left == {"a": 1}
    assert report.complete is False
    moved = jobs(dbs.b)
    assert ns(moved) == [3, 4, 5, 6, 7]
    for row in moved:
        source, _, old_id = row["moved_from"].partition("/")
        assert source == "a" and int(old_id) in before, row["moved_from"]
        original = before[int(old_id)]
        assert {c: row[c] for c in COPIED} == {c: original[c] for c in COPIED}, row["moved_from"]
        assert row["state"] == "available" and row["lease_owner"] is None
    assert len({r["moved_from"] for r in moved}) == 5
    retried_row = next(r for r in moved if r["payload"]["n"] == 3)
    assert retried_row["attempt"] == 1 and retried_row["errors"][0]["message"] == "gateway down"
    assert retried_row["run_at"] == t0 + 10 * SECOND and retried_row["unique_key"] == "retry-me"
    # A keeps the running job, the finished history and the other shard; nothing waits in its outbox.
    assert jobs(dbs.a, "shard = %s AND state <> 'available'", (SHARD,)) == history_before
    assert {(r["payload"]["n"], r["state"]) for r in history_before} == {(1, "running"), (2, "succeeded")}
    assert jobs(dbs.a, "shard = %s AND state = 'available'", (SHARD,)) == []
    assert ns(jobs(dbs.a, "shard = 'district-4'")) == [8]
    assert outbox(dbs.a) == 0
    # The moved jobs are claimable in B (the due ones now, the scheduled ones at their time).
    b = new.store_of("b")
    due = b.job_claim(owner="w-b", shard=SHARD, kinds=[KIND], limit=10, lease=LEASE, now=t0)
    assert sorted(j.payload["n"] for j in due) == [4, 5]
    b.job_complete_many([succeeded(j, now=t0) for j in due], owner="w-b")

    # The running job finishes in A; the next pass finds nothing left.
    assert a.job_complete_many([succeeded(running, now=t0)], owner="w-a") == {running.id}
    again = move_shard(new, SHARD, to="b", wait=0)
    assert again.complete is True
    assert again.left == {"a": 0}
    assert sum(again.moved.values()) == 0 and again.merged == 0
    assert len(jobs(dbs.b)) == 5
    assert outbox(dbs.a) == 0


def test_a_moved_job_keeps_the_trace_context_of_its_enqueue(dbs: Databases, queues: tuple[Queue, Queue]) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from finejobs import tracing

    old, new = queues
    provider = TracerProvider()
    tracing.enable(tracer_provider=provider)
    try:
        traced = old.enqueue(KIND, {"district": 3, "n": 1})
    finally:
        tracing.disable()
        provider.shutdown()
    plain = old.enqueue(KIND, {"district": 3, "n": 2})
    assert traced.trace is not None and plain.trace is None
    assert move_shard(new, SHARD, to="b", wait=0).moved == {"a": 2}
    moved = {r["payload"]["n"]: r["trace"] for r in jobs(dbs.b)}
    assert moved == {1: traced.trace, 2: None}


def test_a_retried_running_job_is_moved_by_the_next_pass(queues: tuple[Queue, Queue], dbs: Databases,
                                                       clock: FakeClock) -> None:
    old, new = queues
    a = old.store_of("a")
    old.enqueue(KIND, {"district": 3, "n": 1})
    [job] = a.job_claim(owner="w-a", shard=SHARD, kinds=[KIND], limit=1, lease=LEASE, now=clock())
    assert move_shard(new, SHARD, to="b", wait=0).left == {"a": 1}
    a.job_complete_many([failed(job, RuntimeError("boom"), retry=NO_JITTER, now=clock(), worker="w-a")],
                        owner="w-a")
    report = move_shard(new, SHARD, to="b", wait=0)
    assert report.complete and report.moved == {"a": 1}
    [row] = jobs(dbs.b)
    assert row["moved_from"] == f"a/{job.id}" and row["attempt"] == 1 and len(row["errors"]) == 1
    assert jobs(dbs.a) == [] and outbox(dbs.a) == 0


# ---------------------------------------------------------------------------------------------- crash safety


def test_a_mover_that_died_after_copying_is_finished_without_duplicates(
        dbs: Databases, queues: tuple[Queue, Queue], clock: FakeClock) -> None:
    old, new = queues
    a, b = old.store_of("a"), new.store_of("b")
    old.enqueue_many(KIND, [{"district": 3, "n": n} for n in range(10)])

    assert a.shard_move_stage(shard=SHARD, target="b", limit=100, now=clock()) == 10
    # Staged jobs are out of the job table: no worker on A can claim them, so none can run twice.
    assert a.job_claim(owner="w-a", shard=SHARD, kinds=[KIND], limit=100, lease=LEASE, now=clock()) == []
    assert Worker(old, shards=[SHARD], listen=False, run_scheduler=False).work_once() == []
    assert a.shard_unfinished(shard=SHARD) == 10  # ... but still counted as unfinished there
    pending = a.shard_move_pending(shard=SHARD, limit=100)
    assert len(pending) == 10 and {target for _, target, _ in pending} == {"b"}
    rows = [row for _, _, row in pending]
    assert b.job_insert_moved(shard=SHARD, rows=rows, source="a", now=clock()) == (10, 10)
    # The mover dies here: the rows are in B and still in A's outbox. Copying them again inserts nothing.
    assert b.job_insert_moved(shard=SHARD, rows=rows, source="a", now=clock()) == (0, 10)
    # A worker on B runs some of the copies meanwhile: finished copies must not come back either.
    ran = Worker(new, shards=[SHARD], concurrency=4, listen=False, run_scheduler=False).work_once()
    assert len(ran) == 4

    report = move_shard(new, SHARD, to="b", wait=0)

    assert report.complete and report.left == {"a": 0}
    assert report.moved == {"a": 10} and report.merged == 0
    in_b = jobs(dbs.b)
    assert ns(in_b) == list(range(10))
    assert sorted(r["moved_from"] for r in in_b) == sorted(f"a/{job_id}" for job_id, _, _ in pending)
    assert collections.Counter(r["state"] for r in in_b) == {"available": 6, "succeeded": 4}
    assert jobs(dbs.a) == [] and outbox(dbs.a) == 0


def test_a_mover_that_died_after_staging_is_finished(dbs: Databases, queues: tuple[Queue, Queue],
                                                     clock: FakeClock) -> None:
    old, new = queues
    a = old.store_of("a")
    old.enqueue_many(KIND, [{"district": 3, "n": n} for n in range(7)])
    assert a.shard_move_stage(shard=SHARD, target="b", limit=3, now=clock()) == 3
    # The mover dies: three jobs in the outbox (in neither job table), four still waiting in A.
    assert outbox(dbs.a) == 3 and len(jobs(dbs.a)) == 4 and jobs(dbs.b) == []
    claimable = a.job_claim(owner="w-a", shard=SHARD, kinds=[KIND], limit=100, lease=LEASE, now=clock())
    staged_ns = {row["payload"]["n"] for _, _, row in a.shard_move_pending(shard=SHARD, limit=100)}
    assert not staged_ns & {j.payload["n"] for j in claimable}  # a staged job cannot be claimed
    a.job_release(owner="w-a", ids=[j.id for j in claimable], now=clock(), error="Test", message="given back")

    report = move_shard(new, SHARD, to="b", batch=2, wait=0)

    assert report.complete and report.moved == {"a": 7} and report.merged == 0
    in_b = jobs(dbs.b)
    assert ns(in_b) == list(range(7))
    assert len({r["moved_from"] for r in in_b}) == 7
    assert jobs(dbs.a) == [] and outbox(dbs.a) == 0


def test_a_target_that_refuses_the_copy_loses_nothing(server_url: str, dbs: Databases,
                                                      queues: tuple[Queue, Queue], clock: FakeClock) -> None:
    """A real fault between staging and copying: the target database turns read-only. The staged jobs
    must stay in the source's outbox (not deleted before they are in the target), and the next move,
    once the target takes writes again, finishes them."""
    old, _ = queues
    old.enqueue_many(KIND, [{"district": 3, "n": n} for n in range(5)])
    b_name = psycopg.conninfo.conninfo_to_dict(libpq_url(dbs.b))["dbname"]

    def read_only(on: bool) -> None:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
            conn.execute(f'ALTER DATABASE "{b_name}" {setting}')

    read_only(True)
    try:
        broken = make_queue(dbs.new, clock=clock)  # connects after the change: its sessions are read-only
        with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
            move_shard(broken, SHARD, to="b", batch=2, wait=0)
        broken.close()
    finally:
        read_only(False)
    assert jobs(dbs.b) == []
    assert outbox(dbs.a) == 2 and ns(jobs(dbs.a)) == [2, 3, 4]  # the first batch waits in the outbox
    assert old.store_of("a").shard_unfinished(shard=SHARD) == 5

    healed = make_queue(dbs.new, clock=clock)
    try:
        report = move_shard(healed, SHARD, to="b", batch=2, wait=0)
    finally:
        healed.close()
    assert report.complete and report.moved == {"a": 5}
    assert ns(jobs(dbs.b)) == [0, 1, 2, 3, 4]
    assert jobs(dbs.a) == [] and outbox(dbs.a) == 0


# ---------------------------------------------------------------------------------------------- unique_key


def test_a_moved_job_whose_unique_key_the_target_holds_is_merged(dbs: Databases, queues: tuple[Queue, Queue],
                                                                  clock: FakeClock) -> None:
    old, new = queues
    new.enqueue(KIND, {"district": 3, "n": 100}, unique_key="k")  # already in B, waiting
    finished = new.enqueue(KIND, {"district": 3, "n": 101}, unique_key="f", priority=1)  # in B, but finished
    b = new.store_of("b")
    [claimed] = b.job_claim(owner="w-b", shard=SHARD, kinds=[KIND], limit=1, lease=LEASE, now=clock())
    assert claimed.id == finished.id
    b.job_complete_many([succeeded(claimed, now=clock())], owner="w-b")
    old.enqueue(KIND, {"district": 3, "n": 1}, unique_key="k")
    old.enqueue(KIND, {"district": 3, "n": 2}, unique_key="f")  # a finished job does not hold its key
    old.enqueue(KIND, {"district": 3, "n": 3})

    report = move_shard(new, SHARD, to="b", wait=0)

    assert report.merged == 1
    assert report.moved == {"a": 2}
    assert report.complete
    holders = jobs(dbs.b, "unique_key = 'k'")
    assert len(holders) == 1 and holders[0]["payload"]["n"] == 100 and holders[0]["moved_from"] is None
    assert ns(jobs(dbs.b, "unique_key = 'f'")) == [2, 101]
    assert ns(jobs(dbs.b)) == [2, 3, 100, 101]
    assert jobs(dbs.a) == [] and outbox(dbs.a) == 0


# ---------------------------------------------------------------------------------------------- live


class Runs:
    """Counts handler runs per payload n, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counter: collections.Counter[int] = collections.Counter()

    def add(self, n: int) -> None:
        with self.lock:
            self.counter[n] += 1

    def snapshot(self) -> collections.Counter[int]:
        with self.lock:
            return collections.Counter(self.counter)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_moving_a_shard_while_workers_keep_running_loses_and_duplicates_no_job(dbs: Databases) -> None:
    backlog, extra = 1500, 500
    runs = Runs()

    def handle(payload: dict[str, Any]) -> None:
        time.sleep(0.001)
        runs.add(payload["n"])

    # Workers and apps have queues (and connection pools) of their own, as separate processes would.
    worker_old, worker_new = make_queue(dbs.old, handle), make_queue(dbs.new, handle)
    app_old, app_new, mover = make_queue(dbs.old), make_queue(dbs.new), make_queue(dbs.new)
    queues = [worker_old, worker_new, app_old, app_new, mover]
    workers: list[Worker] = []
    enqueued = list(range(backlog))
    try:
        app_old.enqueue_many(KIND, [{"district": 3, "n": n} for n in enqueued])
        assert unfinished(dbs.a) == backlog
        for q in (worker_old, worker_new):
            worker = q.worker(shards=[SHARD], concurrency=4, poll_interval=0.05)
            assert isinstance(worker, Worker)
            workers.append(worker)
        assert [w.database for w in workers] == ["a", "b"]
        for worker in workers:
            worker.start()

        enqueue_errors: list[BaseException] = []
        more = list(range(backlog, backlog + extra))

        def enqueuer() -> None:
            try:
                for n in more:  # half still routed with the OLD map (an app not redeployed yet), half with the NEW
                    (app_old if n % 2 else app_new).enqueue(KIND, {"district": 3, "n": n})
                    time.sleep(0.002)
            except BaseException as exc:  # reported by the assertion below
                enqueue_errors.append(exc)

        wait_until(lambda: len(runs.snapshot()) > 0, 20, "the worker on A to run a job")
        started = time.monotonic()
        feeder = threading.Thread(target=enqueuer, name="enqueuer", daemon=True)
        feeder.start()
        first = move_shard(mover, SHARD, to="b", batch=100, wait=30)
        first_took = time.monotonic() - started
        feeder.join(30)
        assert not feeder.is_alive(), "the enqueuer did not finish"
        assert enqueue_errors == []
        enqueued += more

        final = move_shard(mover, SHARD, to="b", batch=100, wait=30)  # the operator's final pass
        stores = [mover.store_of(name) for name in ("a", "b")]  # unfinished: waiting, running or in an outbox
        wait_until(lambda: sum(store.shard_unfinished(shard=SHARD) for store in stores) == 0, 60,
                   "no unfinished district-3 job in either database")
        for worker in workers:
            worker.stop(timeout=30)
        assert [w.error for w in workers] == [None, None]

        counter = runs.snapshot()
        duplicates = {n: c for n, c in counter.items() if c > 1}
        assert duplicates == {}, f"jobs run more than once: {sorted(duplicates.items())[:20]}"
        lost = set(enqueued) - set(counter)
        assert lost == set(), f"{len(lost)} jobs never ran: {sorted(lost)[:20]}"
        assert set(counter) == set(enqueued)
        done_a = jobs(dbs.a, "shard = %s", (SHARD,))
        done_b = jobs(dbs.b, "shard = %s", (SHARD,))
        assert {r["state"] for r in done_a + done_b} <= {"succeeded"}
        assert len(done_a) + len(done_b) == len(enqueued)
        assert sorted(ns(done_a) + ns(done_b)) == enqueued
        assert outbox(dbs.a) == 0 and outbox(dbs.b) == 0
        assert final.complete and final.left == {"a": 0}
        # The move overlapped the work: the worker on A had barely started when the first pass began.
        assert first.moved.get("a", 0) > 0
        moved_rows = [r for r in done_b if r["moved_from"] is not None]
        assert len(moved_rows) == sum(first.moved.values()) + sum(final.moved.values())
        print(f"\nlive move: first pass {first_took:.2f}s moved={first.moved} left={first.left}; "
              f"final moved={final.moved}; ran in a={len(done_a)} b={len(done_b)} "
              f"(moved {len(moved_rows)}, enqueued in b {len(done_b) - len(moved_rows)})")
    finally:
        for worker in workers:
            worker.stop(timeout=30)
        for q in queues:
            q.close()
