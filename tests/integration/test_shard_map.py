"""A shard map over two real databases: routing at enqueue, conn= checks, workers per database,
migrations, aggregated reads, ids per database, and schedules declared in code.

The module makes two fresh, migrated databases on the local server (emptied before each test): A holds
districts 1-10, B holds 11-20, and A is the default (it holds every shard the map does not place).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pydantic
import pytest
import sqlalchemy as sa

import finejobs
from finejobs import (
    DatabaseUnavailable,
    Every,
    FinejobsError,
    InvalidJobOptions,
    JobKind,
    JobNotFound,
    JobSpec,
    JobState,
    PayloadError,
    Queue,
    Worker,
)
from finejobs.devdb import create_database, database_url, drop_database
from finejobs.runtime.worker_group import WorkerGroup
from finejobs.scheduler import declare_all
from finejobs.sharding import ShardMap
from finejobs.store import available_migrations, libpq_url, normalize_url
from finejobs.testing import FakeClock

SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
A_SHARDS = ["district-[1-9]", "district-10"]
B_SHARDS = ["district-1[1-9]", "district-20"]
MISSING_DB = "finejobs_nonexistent_xyz"


class Alert(pydantic.BaseModel):
    district: int
    note: str = ""


def district_map(url_a: str, url_b: str) -> ShardMap:
    return ShardMap({"a": url_a, "b": url_b}, {"a": A_SHARDS, "b": B_SHARDS}, default="a")


def home(district: int) -> str:
    return "a" if 1 <= district <= 10 else "b"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def migrated_urls(server_url: str) -> Iterator[dict[str, str]]:
    """Two fresh migrated databases, "a" and "b", made once for this module and dropped after it."""
    made: dict[str, str] = {}
    try:
        for name in ("a", "b"):
            made[name] = create_database(server_url, prefix=f"finejobs_map_{name}")
            setup = finejobs.Queue(made[name])
            try:
                setup.migrate()
            finally:
                setup.close()
        yield made
    finally:
        for url in made.values():
            drop_database(server_url, url)


@pytest.fixture
def urls(migrated_urls: dict[str, str]) -> dict[str, str]:
    """The two databases, emptied: no jobs, no schedules, ids restarting at 1 in both."""
    for url in migrated_urls.values():
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("TRUNCATE finejobs_jobs, finejobs_schedules RESTART IDENTITY")
    return migrated_urls


@pytest.fixture
def empty_urls(server_url: str) -> Iterator[dict[str, str]]:
    """Two fresh databases with nothing in them (for migration tests)."""
    made: dict[str, str] = {}
    try:
        for name in ("a", "b"):
            made[name] = create_database(server_url, prefix=f"finejobs_map_empty_{name}")
        yield made
    finally:
        for url in made.values():
            drop_database(server_url, url)


@pytest.fixture
def missing_url(server_url: str) -> str:
    """The URL of a database that does not exist on the server: connecting to it fails."""
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (MISSING_DB,)).fetchone() is None
    return database_url(server_url, MISSING_DB)


@pytest.fixture
def queue(urls: dict[str, str], clock: FakeClock) -> Iterator[Queue]:
    """A Queue over the two-database map, driven by the FakeClock."""
    q = Queue(shard_map=district_map(urls["a"], urls["b"]), clock=clock)
    yield q
    q.close()


class Calls:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)


@pytest.fixture
def calls() -> Calls:
    return Calls()


def declare_alert(q: Queue, calls: Calls) -> JobKind[Any, Any]:
    @q.job("t.alert", shard_by="district")
    def send(payload: Alert) -> None:
        calls.add((payload.district, payload.note))

    return send


@pytest.fixture
def alert(queue: Queue, calls: Calls) -> JobKind[Any, Any]:
    return declare_alert(queue, calls)


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def rows(url: str) -> list[tuple[int, str, int, str, str]]:
    """(id, shard, district, note, state) of every job row in the database, by id."""
    found = query(url, "SELECT id, shard, (payload->>'district')::int, coalesce(payload->>'note', ''), state "
                       "FROM finejobs_jobs ORDER BY id")
    return [(r[0], r[1], r[2], r[3], r[4]) for r in found]


def count(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM finejobs_jobs")[0][0])


def stray(url: str, clock: FakeClock, shard: str, note: str = "stray") -> int:
    """Put a job in ``url``'s database with the given shard, whatever the map says (as a single-database
    queue would); returns its id."""
    single = Queue(url, clock=clock)
    try:
        kind = declare_alert(single, Calls())
        return kind.enqueue(Alert(district=99, note=note), shard=shard).id
    finally:
        single.close()


# ---------------------------------------------------------------- 1. routing at enqueue


def test_single_jobs_go_to_their_shards_database(queue: Queue, alert: JobKind[Any, Any],
                                                 urls: dict[str, str]) -> None:
    j3 = alert.enqueue(Alert(district=3, note="three"))
    j12 = alert.enqueue({"district": 12, "note": "twelve"})
    assert (j3.shard, j12.shard) == ("district-3", "district-12")
    assert rows(urls["a"]) == [(j3.id, "district-3", 3, "three", "available")]
    assert rows(urls["b"]) == [(j12.id, "district-12", 12, "twelve", "available")]


@pytest.mark.parametrize("order", ["ascending", "interleaved"])
def test_enqueue_many_splits_per_database_and_keeps_input_order(queue: Queue, alert: JobKind[Any, Any],
                                                                urls: dict[str, str], order: str) -> None:
    districts = list(range(1, 21))
    if order == "interleaved":  # 20, 1, 19, 2, ...: the two databases alternate in the input
        districts = [d for pair in zip(range(20, 10, -1), range(1, 11), strict=True) for d in pair]
    jobs = alert.enqueue_many([Alert(district=d, note=f"n{d}") for d in districts])

    assert [(j.shard, j.payload["district"], j.payload["note"]) for j in jobs] == \
        [(f"district-{d}", d, f"n{d}") for d in districts]
    stored = {name: {r[0]: r for r in rows(url)} for name, url in urls.items()}
    assert len(stored["a"]) == len(stored["b"]) == 10
    for d, job in zip(districts, jobs, strict=True):
        row = stored[home(d)].get(job.id)
        assert row == (job.id, f"district-{d}", d, f"n{d}", "available"), f"district {d}: job {job.id}"
    for name, by_id in stored.items():  # nothing landed in the wrong database
        assert sorted(r[2] for r in by_id.values()) == sorted(d for d in districts if home(d) == name)


def test_unmapped_shards_go_to_the_default_database(queue: Queue, alert: JobKind[Any, Any], calls: Calls,
                                                    urls: dict[str, str]) -> None:
    elsewhere = alert.enqueue(Alert(district=15, note="explicit"), shard="elsewhere")  # district 15 is B's
    beyond = alert.enqueue(Alert(district=21, note="beyond"))  # district-21: no pattern places it

    @queue.job("t.plain")
    def plain(payload: dict[str, Any]) -> None:
        pass

    unrouted = plain.enqueue({"district": 14, "note": "plain"})  # no rule: the "default" shard
    assert (elsewhere.shard, beyond.shard, unrouted.shard) == ("elsewhere", "district-21", "default")
    assert rows(urls["a"]) == [(elsewhere.id, "elsewhere", 15, "explicit", "available"),
                               (beyond.id, "district-21", 21, "beyond", "available"),
                               (unrouted.id, "default", 14, "plain", "available")]
    assert rows(urls["b"]) == []


# ---------------------------------------------------------------- 2. nothing written on invalid input


@pytest.mark.parametrize("bad", [
    pytest.param({"district": "not a number"}, id="payload"),
    pytest.param({"district": 4, "typo": 1}, id="extra-field"),
    pytest.param(JobSpec({"district": 5}, priority=70_000), id="option"),
    pytest.param(JobSpec({"district": 5}, shard="Bad Shard"), id="shard-name"),
])
def test_a_bulk_with_one_invalid_item_writes_nothing_anywhere(queue: Queue, alert: JobKind[Any, Any],
                                                              urls: dict[str, str], bad: Any) -> None:
    items = [{"district": 3}, {"district": 12}, {"district": 7}, {"district": 18}, bad, {"district": 20}]
    with pytest.raises((PayloadError, InvalidJobOptions)):
        alert.enqueue_many(items)
    assert (count(urls["a"]), count(urls["b"])) == (0, 0)
    alert.enqueue_many(items[:4])  # the valid ones alone are accepted: the databases did work
    assert (count(urls["a"]), count(urls["b"])) == (2, 2)


# ---------------------------------------------------------------- 3. enqueue in the caller's transaction


@pytest.fixture
def engine_a(urls: dict[str, str]) -> Iterator[sa.Engine]:
    engine = sa.create_engine(normalize_url(urls["a"]))
    assert engine.dialect.driver == "psycopg"
    yield engine
    engine.dispose()


def test_conn_enqueue_on_the_right_database_rolls_back_with_the_transaction(
        queue: Queue, alert: JobKind[Any, Any], engine_a: sa.Engine, urls: dict[str, str]) -> None:
    with engine_a.connect() as conn, conn.begin() as tx:
        job = alert.enqueue(Alert(district=3), conn=conn)
        inside = conn.execute(sa.text("SELECT shard FROM finejobs_jobs WHERE id = :id"), {"id": job.id})
        assert inside.scalar_one() == "district-3"
        assert count(urls["a"]) == 0  # not committed yet
        tx.rollback()
    assert (count(urls["a"]), count(urls["b"])) == (0, 0)


def test_conn_enqueue_on_the_right_database_commits_with_the_transaction(
        queue: Queue, alert: JobKind[Any, Any], engine_a: sa.Engine, urls: dict[str, str]) -> None:
    with engine_a.begin() as conn:
        job = alert.enqueue(Alert(district=3, note="tx"), conn=conn)
        batch = alert.enqueue_many([Alert(district=1), Alert(district=10)], conn=conn)
    assert rows(urls["a"]) == [(job.id, "district-3", 3, "tx", "available"),
                               (batch[0].id, "district-1", 1, "", "available"),
                               (batch[1].id, "district-10", 10, "", "available")]
    assert count(urls["b"]) == 0


def check_refusals(alert: JobKind[Any, Any], conn: Any) -> None:
    with pytest.raises(InvalidJobOptions) as wrong:
        alert.enqueue(Alert(district=12), conn=conn)
    message = str(wrong.value)
    assert "district-12" in message
    assert "database 'b'" in message
    assert "conn is a connection to 'a'" in message

    with pytest.raises(InvalidJobOptions) as split:
        alert.enqueue_many([Alert(district=3), Alert(district=12)], conn=conn)
    message = str(split.value)
    assert "several" in message
    assert "district-3 in database 'a'" in message and "district-12 in database 'b'" in message


def test_conn_enqueue_refuses_jobs_of_another_database_sqlalchemy(
        queue: Queue, alert: JobKind[Any, Any], engine_a: sa.Engine, urls: dict[str, str]) -> None:
    with engine_a.begin() as conn:
        check_refusals(alert, conn)
    assert (count(urls["a"]), count(urls["b"])) == (0, 0)


def test_conn_enqueue_refuses_jobs_of_another_database_psycopg(
        queue: Queue, alert: JobKind[Any, Any], urls: dict[str, str]) -> None:
    with psycopg.connect(libpq_url(urls["a"])) as conn:  # not autocommit: one transaction, committed at exit
        check_refusals(alert, conn)
        job = alert.enqueue(Alert(district=9), conn=conn)  # the connection is still usable for A's shards
    assert rows(urls["a"]) == [(job.id, "district-9", 9, "", "available")]
    assert count(urls["b"]) == 0


def test_conn_enqueue_on_b_names_b_as_the_connections_database(
        queue: Queue, alert: JobKind[Any, Any], urls: dict[str, str]) -> None:
    with psycopg.connect(libpq_url(urls["b"])) as conn:
        with pytest.raises(InvalidJobOptions, match="conn is a connection to 'b'") as wrong:
            alert.enqueue(Alert(district=3), conn=conn)
        assert "district-3" in str(wrong.value) and "database 'a'" in str(wrong.value)
        job = alert.enqueue(Alert(district=12), conn=conn)
    assert rows(urls["b"]) == [(job.id, "district-12", 12, "", "available")]
    assert count(urls["a"]) == 0


# ---------------------------------------------------------------- 4. workers connect to their databases only


def test_worker_of_a_shard_in_a_never_needs_b(urls: dict[str, str], missing_url: str, clock: FakeClock,
                                              calls: Calls) -> None:
    q = Queue(shard_map=district_map(urls["a"], missing_url), clock=clock)
    try:
        alert = declare_alert(q, calls)
        job = alert.enqueue(Alert(district=3, note="run me"))
        worker = q.worker(shards=["district-3"])
        assert isinstance(worker, Worker) and not isinstance(worker, WorkerGroup)
        assert worker.database == "a"
        ran = worker.work_once()
        assert [j.id for j in ran] == [job.id]
        assert calls.items == [(3, "run me")]
        assert rows(urls["a"]) == [(job.id, "district-3", 3, "run me", "succeeded")]
        with pytest.raises(DatabaseUnavailable):  # B really is unreachable: the worker never touched it
            q.store_of("b").job_exists(job_id=job.id)
    finally:
        q.close()


def test_worker_of_a_glob_inside_b_connects_to_b_only(urls: dict[str, str], missing_url: str, clock: FakeClock,
                                                      calls: Calls) -> None:
    """district-1[1-9] is exactly B's pattern: no shard it matches can live in A."""
    shard_map = district_map(urls["a"], urls["b"])
    assert shard_map.databases_for(["district-1[1-9]"]) == ["b"]

    q = Queue(shard_map=district_map(missing_url, urls["b"]), clock=clock)  # A does not exist
    try:
        alert = declare_alert(q, calls)
        job = alert.enqueue(Alert(district=12, note="b only"))
        worker = q.worker(shards=["district-1[1-9]"])
        assert isinstance(worker, Worker) and worker.database == "b"
        assert [j.id for j in worker.work_once()] == [job.id]
        assert calls.items == [(12, "b only")]
    finally:
        q.close()


@pytest.mark.parametrize("shards", [["district-*"], None, ["district-3", "district-12"]],
                         ids=["glob", "all", "names"])
def test_worker_group_runs_each_database_and_leaves_strays(queue: Queue, alert: JobKind[Any, Any], calls: Calls,
                                                           urls: dict[str, str], clock: FakeClock,
                                                           shards: list[str] | None) -> None:
    j3 = alert.enqueue(Alert(district=3, note="a"))
    j12 = alert.enqueue(Alert(district=12, note="b"))
    lost = stray(urls["a"], clock, "district-12")  # in A, but the map places district-12 in B

    group = queue.worker(shards=shards) if shards is not None else queue.worker()
    assert isinstance(group, WorkerGroup)
    assert [w.database for w in group.workers] == ["a", "b"]
    claimed = group.work_once()

    assert sorted((j.shard, j.payload["note"]) for j in claimed) == [("district-12", "b"), ("district-3", "a")]
    assert sorted(calls.items) == [(3, "a"), (12, "b")]
    assert rows(urls["a"]) == [(j3.id, "district-3", 3, "a", "succeeded"),
                               (lost, "district-12", 99, "stray", "available")]
    assert rows(urls["b"]) == [(j12.id, "district-12", 12, "b", "succeeded")]


def test_worker_of_a_database_leaves_strays_of_a_named_shard(queue: Queue, alert: JobKind[Any, Any],
                                                             calls: Calls, urls: dict[str, str],
                                                             clock: FakeClock) -> None:
    """A worker serves only the shards the map places in its database, even when it names one of B's."""
    lost = stray(urls["a"], clock, "district-12")
    worker = Worker(queue, database="a", shards=["district-12"])
    assert worker.owns("district-12") is False
    assert worker.work_once() == []
    assert calls.items == []
    assert rows(urls["a"]) == [(lost, "district-12", 99, "stray", "available")]


# ---------------------------------------------------------------- 5. migrations


def test_migrate_each_applies_every_migration_in_each_database(empty_urls: dict[str, str],
                                                               clock: FakeClock) -> None:
    every = [m.version for m in available_migrations()]
    q = Queue(shard_map=district_map(empty_urls["a"], empty_urls["b"]), clock=clock)
    try:
        assert q.migrate_each() == {"a": every, "b": every}
        for url in empty_urls.values():
            assert [r[0] for r in query(url, "SELECT version FROM finejobs_migrations ORDER BY version")] == every
            assert query(url, "SELECT to_regclass('finejobs_jobs') IS NOT NULL")[0][0] is True
        assert q.migrate() == []
        assert q.migrate_each() == {"a": [], "b": []}
    finally:
        q.close()


def test_migrate_upgrades_the_database_that_needs_it(empty_urls: dict[str, str], clock: FakeClock) -> None:
    every = [m.version for m in available_migrations()]
    first = Queue(empty_urls["a"])
    try:
        assert first.migrate() == every
    finally:
        first.close()
    q = Queue(shard_map=district_map(empty_urls["a"], empty_urls["b"]), clock=clock)
    try:
        assert q.migrate_each() == {"a": [], "b": every}
        assert q.migrate() == []
        for url in empty_urls.values():
            assert [r[0] for r in query(url, "SELECT version FROM finejobs_migrations ORDER BY version")] == every
    finally:
        q.close()


# ---------------------------------------------------------------- 6. jobs() and stats() across databases


def enqueue_spread(alert: JobKind[Any, Any], clock: FakeClock, districts: list[int]) -> None:
    for d in districts:
        alert.enqueue(Alert(district=d, note=f"n{d}"))
        clock.advance(SECOND)


def test_jobs_lists_both_databases_newest_first(queue: Queue, alert: JobKind[Any, Any], clock: FakeClock) -> None:
    # Ids restart at 1 in each database: only created_at tells the real order.
    enqueue_spread(alert, clock, [3, 4, 12, 5, 13, 6])  # A: ids 1-4, B: ids 1-2
    newest_first = [6, 13, 5, 12, 4, 3]
    listed = queue.jobs()
    assert [j.payload["district"] for j in listed] == newest_first
    assert [j.created_at for j in listed] == sorted((j.created_at for j in listed), reverse=True)
    assert [j.payload["district"] for j in queue.jobs(limit=3)] == newest_first[:3]
    assert [j.payload["district"] for j in queue.jobs(limit=1)] == [6]
    assert [j.payload["district"] for j in queue.jobs(shard="district-12")] == [12]
    assert [j.payload["district"] for j in queue.jobs(shard="district-4")] == [4]
    assert queue.jobs(shard="district-19") == []


def test_jobs_of_one_shard_only_query_its_database(urls: dict[str, str], missing_url: str, clock: FakeClock,
                                                   calls: Calls) -> None:
    q = Queue(shard_map=district_map(urls["a"], missing_url), clock=clock)
    try:
        alert = declare_alert(q, calls)
        enqueue_spread(alert, clock, [3, 4, 3])
        assert [j.payload["district"] for j in q.jobs(shard="district-3")] == [3, 3]
        assert [j.payload["district"] for j in q.jobs(shard="district-4", limit=5)] == [4]
        with pytest.raises(DatabaseUnavailable):  # every shard: B is asked too, and it is not there
            q.jobs()
    finally:
        q.close()


def test_stats_sum_both_databases(queue: Queue, alert: JobKind[Any, Any], urls: dict[str, str],
                                  clock: FakeClock) -> None:
    enqueue_spread(alert, clock, [3, 3, 12, 13])
    later = alert.enqueue(Alert(district=14), run_at=clock() + HOUR)  # scheduled
    stray(urls["a"], clock, "district-12")  # the same shard in both databases: its counts add up
    ran = queue.worker(shards=["district-3"]).work_once()
    assert len(ran) == 2
    queue.cancel(later.id, database="b")

    stats = queue.stats()
    expected_states = {s.value: 0 for s in JobState}
    expected_states.update({"succeeded": 2, "available": 3, "cancelled": 1})
    assert stats.by_state == expected_states
    assert stats.total == 6
    assert stats.by_kind == {"t.alert": {"succeeded": 2, "available": 3, "cancelled": 1}}
    assert stats.by_shard == {
        "district-3": {"succeeded": 2},
        "district-12": {"available": 2},
        "district-13": {"available": 1},
        "district-14": {"cancelled": 1},
    }


def test_stats_count_scheduled_jobs_in_b(queue: Queue, alert: JobKind[Any, Any], clock: FakeClock) -> None:
    alert.enqueue(Alert(district=15), run_at=clock() + HOUR)
    alert.enqueue(Alert(district=5), run_at=clock() + HOUR)
    alert.enqueue(Alert(district=6))
    stats = queue.stats()
    assert (stats.by_state["scheduled"], stats.by_state["available"], stats.total) == (2, 1, 3)
    assert stats.by_shard == {"district-15": {"scheduled": 1}, "district-5": {"scheduled": 1},
                              "district-6": {"available": 1}}


# ---------------------------------------------------------------- 7. ids are per database


def test_get_cancel_retry_find_the_database_holding_the_id(queue: Queue, alert: JobKind[Any, Any],
                                                           urls: dict[str, str]) -> None:
    [a1] = alert.enqueue_many([Alert(district=3, note="a1")])
    b1, b2, b3 = alert.enqueue_many([Alert(district=d, note=f"b{i}") for i, d in enumerate([11, 12, 13], 1)])
    assert a1.id == b1.id  # two fresh databases: both start at the same id
    assert b3.id not in (a1.id, b1.id, b2.id)

    found = queue.get(b3.id)  # only B has it
    assert (found.id, found.shard, found.payload["note"]) == (b3.id, "district-13", "b3")

    with pytest.raises(FinejobsError) as ambiguous:
        queue.get(a1.id)
    assert not isinstance(ambiguous.value, JobNotFound)
    assert "databases a, b" in str(ambiguous.value)
    assert queue.get(a1.id, database="a").payload["note"] == "a1"
    assert queue.get(a1.id, database="b").payload["note"] == "b1"
    with pytest.raises(JobNotFound):
        queue.get(10_000)

    with pytest.raises(FinejobsError, match="databases a, b"):
        queue.cancel(a1.id)
    cancelled = queue.cancel(b1.id, database="b")
    assert (cancelled.state, cancelled.shard) == (JobState.CANCELLED, "district-11")
    assert [(r[0], r[4]) for r in rows(urls["a"])] == [(a1.id, "available")]
    assert [(r[0], r[4]) for r in rows(urls["b"])] == [(b1.id, "cancelled"), (b2.id, "available"),
                                                       (b3.id, "available")]
    assert queue.cancel(b3.id).state is JobState.CANCELLED  # found in B without naming it
    assert queue.retry(b1.id, database="b").state is JobState.AVAILABLE
    assert [(r[0], r[4]) for r in rows(urls["a"])] == [(a1.id, "available")]
    assert [(r[0], r[4]) for r in rows(urls["b"])] == [(b1.id, "available"), (b2.id, "available"),
                                                       (b3.id, "cancelled")]


# ---------------------------------------------------------------- 8. schedules declared in code


def schedule_rows(url: str) -> list[tuple[str, str, str]]:
    return [(r[0], r[1], r[2]) for r in query(url, "SELECT name, shard, source FROM finejobs_schedules ORDER BY name")]


def test_declared_schedule_lives_in_its_shards_database(queue: Queue, alert: JobKind[Any, Any],
                                                        urls: dict[str, str], clock: FakeClock,
                                                        calls: Calls) -> None:
    queue.schedule("report-12", alert, Every(hours=1), payload={"district": 12, "note": "tick"}, shard="district-12")
    queue.schedule("report-3", alert, Every(hours=1), payload={"district": 3}, shard="district-3")

    worker = queue.worker(shards=["district-12"])  # B's worker starting: upserts B's schedules only
    assert isinstance(worker, Worker) and worker.database == "b"
    assert worker.scheduler is not None
    assert worker.scheduler.declare() == ["report-12"]
    assert schedule_rows(urls["a"]) == []
    assert schedule_rows(urls["b"]) == [("report-12", "district-12", "code")]

    assert sorted(declare_all(queue, now=clock())) == ["report-3"]  # report-12 is unchanged
    assert schedule_rows(urls["a"]) == [("report-3", "district-3", "code")]
    assert schedule_rows(urls["b"]) == [("report-12", "district-12", "code")]

    clock.advance(HOUR)
    assert worker.scheduler.run_once(clock()) == 1  # the tick's job is made in B
    assert [(r[1], r[2], r[3]) for r in rows(urls["b"])] == [("district-12", 12, "tick")]
    assert count(urls["a"]) == 0
    assert len(worker.work_once()) == 1
    assert calls.items == [(12, "tick")]


def test_runtime_schedule_operations_refuse_a_shard_outside_the_default_database(
        queue: Queue, alert: JobKind[Any, Any], urls: dict[str, str]) -> None:
    # Runtime operations write to the default database (a); a tick there for a shard of b would be a stray.
    with pytest.raises(finejobs.ConfigurationError, match=r"shard 'district-12' lives in database 'b'"):
        queue.schedules.add("report-12", alert, Every(hours=1), payload={"district": 12}, shard="district-12")
    assert schedule_rows(urls["a"]) == [] and schedule_rows(urls["b"]) == []

    queue.schedules.add("report-3", alert, Every(hours=1), payload={"district": 3}, shard="district-3")
    with pytest.raises(finejobs.ConfigurationError, match="declare this schedule in code"):
        queue.schedules.update("report-3", shard="district-12")
    assert schedule_rows(urls["a"]) == [("report-3", "district-3", "runtime")]
