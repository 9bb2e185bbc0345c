"""Workers and enqueuers run as a role that may only read and write finejobs' tables (no DDL)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import finejobs
from finejobs import JobState, Queue


def test_a_dml_only_role_can_enqueue_work_and_operate(dml_role: Any) -> None:
    queue = Queue(dml_role())

    @queue.job("greet")
    def greet(payload: dict[str, str]) -> None:
        if payload["name"] == "boom":
            raise ValueError("boom")

    try:
        queue.store.check_schema()
        ok = greet.enqueue({"name": "a"}, unique_key="a")
        assert greet.enqueue({"name": "a"}, unique_key="a").id == ok.id
        bad = greet.enqueue_many([{"name": "boom"}])[0]
        doomed = greet.enqueue({"name": "c"})
        queue.cancel(doomed.id)
        worker = queue.worker(listen=True, concurrency=2)
        while worker.work_once():
            pass
        worker.maintenance.run_once(queue.clock())  # rescue, expire, prune: plain DML under advisory locks
        assert queue.get(ok.id).state is JobState.SUCCEEDED
        assert queue.get(bad.id).state in (JobState.SCHEDULED, JobState.AVAILABLE)  # retried later
        assert queue.get(doomed.id).state is JobState.CANCELLED
        assert queue.stats().total == 3
    finally:
        queue.close()


def test_a_dml_only_role_cannot_change_the_schema(dml_role: Any, empty_database_url: str) -> None:
    url = dml_role()
    queue = Queue(url)
    try:
        assert queue.migrate() == [], "an up-to-date schema needs no DDL, so deploy scripts may call migrate"
        with queue.store.transaction() as conn, pytest.raises(Exception, match="permission denied"):
            conn.exec_driver_sql("CREATE TABLE finejobs_sneaky (x int)")
    finally:
        queue.close()
    # On a database that still needs its migrations, the role gets a clear error (PostgreSQL 15+ no longer
    # lets every role create tables in the public schema).
    fresh = Queue(url.rsplit("/", 1)[0] + "/" + empty_database_url.rsplit("/", 1)[1])
    try:
        with pytest.raises(finejobs.SchemaError, match="permission denied"):
            fresh.migrate()
    finally:
        fresh.close()


def test_kinds_shards_and_payloads_are_parameters_not_sql(queue: Queue) -> None:
    hostile = "x'); DROP TABLE finejobs_jobs; --"

    @queue.job(hostile)
    def strange(payload: dict[str, str]) -> None: ...

    job = strange.enqueue({hostile: hostile}, unique_key=hostile)
    assert queue.get(job.id).kind == hostile
    assert queue.get(job.id).payload == {hostile: hostile}
    with pytest.raises(finejobs.InvalidJobOptions):
        strange.enqueue({}, shard=hostile)
    assert [j.id for j in queue.jobs(kind=hostile)] == [job.id]


def test_pool_size_bounds_the_connections_a_process_takes(clean_db: str) -> None:
    queue = Queue(clean_db, pool_size=5)
    queue.configure(pool_size=2)  # what `finejobs worker --pool-size 2` does
    engine = queue.store.engine
    first, second = engine.connect(), engine.connect()
    got_third = threading.Event()

    def third() -> None:
        with engine.connect():
            got_third.set()

    waiter = threading.Thread(target=third, daemon=True)
    try:
        waiter.start()
        assert not got_third.wait(0.5), "a third connection must wait: the pool holds at most 2"
        first.close()
        assert got_third.wait(5), "it gets one as soon as one is given back"
    finally:
        first.close()
        second.close()
        waiter.join(5)
        queue.close()
