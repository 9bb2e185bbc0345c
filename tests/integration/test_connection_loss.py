"""A worker whose database connections are cut mid-run logs, backs off, reconnects and loses no job."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from finejobs import Queue

DB = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def real_queue(clean_db: str) -> Iterator[Queue]:
    queue = Queue(clean_db)
    yield queue
    queue.close()


def _cut_worker_connections(db: DB) -> int:
    rows = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return len(rows)


def test_worker_survives_its_connections_being_cut(real_queue: Queue, db: DB,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    seen: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    @real_queue.job("slowish")
    def slowish(payload: dict[str, Any]) -> None:
        time.sleep(0.002)
        with lock:
            seen[payload["n"]] += 1

    slowish.enqueue_many([{"n": i} for i in range(600)])
    worker = real_queue.worker(concurrency=4, poll_interval=0.05, lease=timedelta(seconds=2),
                               maintenance_interval=0.2)
    worker.start()
    cuts = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = db.execute("SELECT count(*) FROM finejobs_jobs WHERE state = 'succeeded'").fetchone()
            assert done is not None
            if done[0] == 600:
                break
            if cuts < 3 and done[0] > 100 * (cuts + 1):
                cuts += 1 if _cut_worker_connections(db) else 0
            time.sleep(0.05)
    finally:
        worker.stop(timeout=30)
    states = dict(db.execute("SELECT state, count(*) FROM finejobs_jobs GROUP BY state").fetchall())
    assert cuts >= 1, "the test must actually cut connections"
    assert states == {"succeeded": 600}, states
    assert set(seen) == set(range(600)), "every job ran at least once"
    assert worker._fatal is None
    assert any("database unavailable" in r.getMessage() or "lost its connection" in r.getMessage()
               for r in caplog.records), "the outage is logged"
