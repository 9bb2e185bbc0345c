"""Database faults: a server restart mid-run, refused connections, an enqueue during an outage.

The restart runs against an embedded PostgreSQL of the test's own (finejobs.devdb), so the test can
stop and start it without touching the shared server.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import finejobs
from finejobs import DatabaseUnavailable, Queue
from finejobs.devdb import EmbeddedPostgres
from finejobs.store import libpq_url


def _count(url: str, state: str) -> int:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE state = %s", (state,)).fetchone()
        assert row is not None
        return int(row[0])


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres()
    server.start()
    yield server
    server.stop()


def test_worker_carries_on_across_a_server_restart(embedded: EmbeddedPostgres) -> None:
    url = embedded.url
    queue = Queue(url)
    queue.migrate()
    seen: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    @queue.job("work")
    def work(payload: dict[str, int]) -> None:
        time.sleep(0.003)
        with lock:
            seen[payload["n"]] += 1

    work.enqueue_many([{"n": i} for i in range(400)])
    worker = queue.worker(concurrency=4, poll_interval=0.05, lease=timedelta(seconds=3), maintenance_interval=0.2)
    worker.start()
    try:
        _wait(lambda: _count(url, "succeeded") >= 100, 30, "100 jobs before the restart")
        embedded.restart()
        _wait(lambda: _count(url, "succeeded") == 400, 60, "every job after the restart")
    finally:
        worker.stop(timeout=30)
        queue.close()
    assert set(seen) == set(range(400)), "every job ran at least once"
    assert _count(url, "running") == 0
    assert worker._fatal is None


def test_enqueue_during_an_outage_is_a_clear_error_and_writes_nothing(embedded: EmbeddedPostgres) -> None:
    url = embedded.url
    queue = Queue(url)
    queue.migrate()

    @queue.job("outage")
    def outage(payload: dict[str, int]) -> None: ...

    before = _count(url, "available")
    embedded.pause()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as err:
            outage.enqueue({"n": 1})
        assert time.monotonic() - started < 15
        assert "database unavailable" in str(err.value)
    finally:
        embedded.start()
        queue.close()
    assert _count(url, "available") == before


def test_worker_carries_on_when_the_server_refuses_connections(dml_role: Any, database_url: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    # A role that may hold only 2 connections: the server refuses the rest. Assertions read through
    # `database_url` (the admin connection), since the role has no connection to spare.
    queue = Queue(dml_role(connection_limit=2), pool_size=5)

    @queue.job("squeezed")
    def squeezed(payload: dict[str, int]) -> None:
        time.sleep(0.002)

    squeezed.enqueue_many([{"n": i} for i in range(200)])
    queue.close()  # give the connection back before the worker needs it
    worker = queue.worker(concurrency=4, poll_interval=0.05, maintenance_interval=0.05, heartbeat_interval=0.05)
    worker.start()
    try:
        _wait(lambda: _count(database_url, "succeeded") == 200, 60, "every job with too few connections")
    finally:
        worker.stop(timeout=30)
        queue.close()
    assert worker._fatal is None
    refused = [r for r in caplog.records if "too many connections" in r.getMessage()]
    assert refused, "the test must actually hit the connection limit"
    assert _count(database_url, "running") == 0


def test_no_password_in_the_error_of_an_unreachable_database() -> None:
    queue = finejobs.Queue("postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere")

    @queue.job("k")
    def k(payload: dict[str, int]) -> None: ...

    with pytest.raises(DatabaseUnavailable) as err:
        k.enqueue({})
    assert "s3cret-pw" not in str(err.value)
    assert "***" in str(err.value)
    queue.close()
