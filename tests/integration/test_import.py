"""Bulk import with COPY (finejobs.importing) on a real PostgreSQL: rows as enqueue writes them, all or
nothing (an invalid item anywhere writes nothing), groups counted in the same transaction, the caller's
transaction, NOTIFY per due shard, routing and a two-database shard map, streaming as the items are read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pydantic
import pytest
import sqlalchemy as sa

import finejobs
from finejobs import JobSpec, Queue, Retry, ShardMap
from finejobs.errors import InvalidJobOptions, PayloadError
from finejobs.importing import ImportResult, import_jobs
from finejobs.store import libpq_url, normalize_url
from finejobs.testing import FakeClock
from tests.conftest import create_database, drop_database

DB = psycopg.Connection[tuple[Any, ...]]


class Claim(pydantic.BaseModel):
    claim_id: str
    amount: float
    district: int


@pytest.fixture
def claims(queue: Queue) -> finejobs.JobKind[Any, Any]:
    @queue.job("claim", retry=Retry(max_attempts=4), expires_in=timedelta(hours=2), priority=3,
               shard_by="district")
    def claim(payload: Claim) -> None:
        return None

    return claim


def items(n: int, *, bad_at: int | None = None, districts: int = 2) -> Iterator[dict[str, Any]]:
    for i in range(n):
        amount: Any = "not a number" if i == bad_at else round(i * 1.5, 2)
        yield {"claim_id": f"C{i:06d}", "amount": amount, "district": 1 + i % districts}


def count(db: DB, where: str = "true") -> int:
    row = db.execute(f"SELECT count(*) FROM finejobs_jobs WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def test_an_import_writes_the_rows_enqueue_would(queue: Queue, claims: Any, db: DB, clock: FakeClock) -> None:
    seen: list[int] = []
    result = import_jobs(queue, "claim", items(2_500), on_progress=seen.append, batch=1_000)
    assert isinstance(result, ImportResult)
    assert result.count == 2_500 and result.group is None and result.by_database == {"default": 2_500}
    assert seen == [1_000, 2_000, 2_500]
    assert result.to_json()["count"] == 2_500
    assert count(db) == 2_500
    # the same row as enqueue makes of the same item
    enqueued = claims.enqueue({"claim_id": "C000007", "amount": 10.5, "district": 2})
    imported = queue.jobs(kind="claim", shard="district-2", limit=10_000)
    twin = next(j for j in imported if j.payload["claim_id"] == "C000007" and j.id != enqueued.id)
    for name in ("kind", "shard", "state", "priority", "run_at", "expires_at", "max_attempts", "attempt",
                 "unique_key", "errors", "created_at", "group_id"):
        assert getattr(twin, name) == getattr(enqueued, name), name
    assert twin.payload == {"claim_id": "C000007", "amount": 10.5, "district": 2}
    assert twin.expires_at == clock() + timedelta(hours=2)
    by_shard: dict[str, int] = dict(db.execute("SELECT shard, count(*) FROM finejobs_jobs GROUP BY shard").fetchall())
    assert by_shard == {"district-1": 1_250, "district-2": 1_251}


def test_an_invalid_item_anywhere_writes_nothing(queue: Queue, claims: Any, db: DB) -> None:
    with pytest.raises(PayloadError) as caught:
        import_jobs(queue, claims, items(10_000, bad_at=5_000))
    assert caught.value.fields == ["amount"]
    assert count(db) == 0
    # a bad option on one item (JobSpec), an unknown kind, a unique key: refused, nothing written
    specs = [JobSpec({"claim_id": "A", "amount": 1, "district": 1}),
             JobSpec({"claim_id": "B", "amount": 1, "district": 1}, priority=40_000)]
    with pytest.raises(InvalidJobOptions, match="priority"):
        import_jobs(queue, claims, specs)
    with pytest.raises(InvalidJobOptions, match="unique_key"):
        import_jobs(queue, claims, [JobSpec({"claim_id": "A", "amount": 1, "district": 1}, unique_key="k")])
    with pytest.raises(finejobs.UnknownKindError):
        import_jobs(queue, "no.such.kind", [{}])
    with pytest.raises(InvalidJobOptions, match="batch"):
        import_jobs(queue, claims, [], batch=0)
    assert count(db) == 0
    assert import_jobs(queue, claims, []).count == 0


def test_rows_stream_to_the_server_while_the_items_are_read(queue: Queue, claims: Any, clean_db: str) -> None:
    """The iterable is consumed once, item by item, and the server has rows before the last item is read
    (pg_stat_progress_copy, PostgreSQL 14+): nothing is materialized first."""
    processed: list[int] = []

    def watched() -> Iterator[dict[str, Any]]:
        with psycopg.connect(libpq_url(clean_db), autocommit=True) as watcher:
            for i, item in enumerate(items(20_000)):
                if i == 19_999:
                    seen = 0
                    for _ in range(200):  # the server works through what was sent: wait until it has some
                        row = watcher.execute("SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy "
                                              "WHERE relid = 'finejobs_jobs'::regclass").fetchone()
                        seen = int(row[0]) if row is not None else 0
                        if seen > 0:
                            break
                        watcher.execute("SELECT pg_sleep(0.01)")
                    processed.append(seen)
                yield item

    assert import_jobs(queue, claims, watched()).count == 20_000
    assert processed and processed[0] > 0


def test_a_group_counts_its_members_in_the_import(queue: Queue, claims: Any, db: DB) -> None:
    group = queue.group("claims-december")
    result = import_jobs(queue, claims, items(3_000), group=group)
    assert result.group == "claims-december"
    assert count(db, f"group_id = {group.id}") == 3_000
    progress = group.seal()
    assert progress.total == 3_000 and progress.waiting == 3_000
    worker = queue.worker(listen=False, concurrency=50)
    assert isinstance(worker, finejobs.Worker)
    while worker.work_once():
        pass
    final = group.progress()
    assert final.finished and final.succeeded == 3_000 and final.state == "succeeded"
    # a sealed group is refused before anything is streamed
    with pytest.raises(InvalidJobOptions, match="sealed"):
        import_jobs(queue, claims, items(10), group=group)
    assert count(db, f"group_id = {group.id}") == 3_000


def test_a_group_sealed_during_the_import_refuses_it_whole(queue: Queue, claims: Any, db: DB) -> None:
    group = queue.group("sealed-meanwhile")

    def sealing() -> Iterator[dict[str, Any]]:
        for i, item in enumerate(items(1_000)):
            if i == 500:
                group.seal()
            yield item

    with pytest.raises(finejobs.FinejobsError, match="sealed"):
        import_jobs(queue, claims, sealing(), group=group)
    assert count(db) == 0
    assert group.progress().total == 0


def test_inside_the_callers_transaction(queue: Queue, claims: Any, db: DB, clean_db: str) -> None:
    engine = sa.create_engine(normalize_url(clean_db))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TEMP TABLE audit (n int)"))
            assert import_jobs(queue, claims, items(100), conn=conn).count == 100
            assert count(db) == 0  # not committed yet
            conn.rollback()
        assert count(db) == 0
        with engine.begin() as conn:
            import_jobs(queue, claims, items(100), conn=conn)
            # an import that fails rolls back to its savepoint: the caller's transaction goes on
            with pytest.raises(PayloadError):
                import_jobs(queue, claims, items(100, bad_at=50), conn=conn)
            conn.execute(sa.text("SELECT 1"))
        assert count(db) == 100
        with engine.connect() as conn:  # nothing begun yet: the import begins the caller's transaction
            import_jobs(queue, claims, items(10), conn=conn)
            conn.commit()
        assert count(db) == 110
    finally:
        engine.dispose()
    with psycopg.connect(libpq_url(clean_db)) as raw:
        import_jobs(queue, claims, items(5), conn=raw)
        raw.rollback()
        import_jobs(queue, claims, items(5), conn=raw)
        raw.commit()
    assert count(db) == 115


def test_one_notify_per_shard_that_got_due_jobs(queue: Queue, claims: Any, clean_db: str, clock: FakeClock) -> None:
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as listener:
        listener.execute("LISTEN finejobs")
        import_jobs(queue, claims, items(500, districts=3))
        import_jobs(queue, claims, items(500, districts=3), run_at=clock() + timedelta(hours=1))  # none due
        notes = sorted(n.payload for n in listener.notifies(timeout=0.5))
    assert notes == ["district-1", "district-2", "district-3"]


def test_a_shard_partition_and_an_explicit_shard(queue: Queue, claims: Any, db: DB) -> None:
    queue.store.shard_add(["district-1"])
    import_jobs(queue, claims, items(400))
    import_jobs(queue, claims, items(100), shard="manual")
    partitions: dict[str, int] = dict(db.execute(
        "SELECT tableoid::regclass::text, count(*) FROM finejobs_jobs GROUP BY 1").fetchall())
    assert sum(partitions.values()) == 500
    assert len(partitions) == 2 and partitions["finejobs_jobs_other"] == 300


@pytest.fixture(scope="module")
def second_database(server_url: str) -> Iterator[str]:
    url = create_database(server_url, prefix="finejobs_import_b")
    setup = Queue(url)
    setup.migrate()
    setup.close()
    yield url
    drop_database(server_url, url)


def test_a_shard_map_gets_one_copy_per_database(clean_db: str, second_database: str, clock: FakeClock) -> None:
    with psycopg.connect(libpq_url(second_database), autocommit=True) as b:
        b.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
    shard_map = ShardMap({"a": clean_db, "b": second_database}, {"b": ["district-2"]}, default="a")
    q = Queue(shard_map=shard_map, clock=clock)

    @q.job("claim", shard_by="district")
    def claim(payload: Claim) -> None:
        return None

    try:
        result = import_jobs(q, "claim", items(1_000))
        assert result.by_database == {"a": 500, "b": 500}
        with pytest.raises(PayloadError):  # the last item is bad: neither database keeps anything of it
            import_jobs(q, claim, items(1_000, bad_at=999))
        with psycopg.connect(libpq_url(second_database), autocommit=True) as b:
            assert count(b) == 500
        with psycopg.connect(libpq_url(clean_db), autocommit=True) as a:
            assert count(a) == 500
            with pytest.raises(InvalidJobOptions, match="one database"):  # conn= is one database
                import_jobs(q, claim, items(10), conn=a)
    finally:
        q.close()
