"""Workers honour the control table (pauses) and keep the worker registry, on a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from finejobs import Admin, FinejobsError, Queue
from finejobs.runtime.claiming import PAUSE_NOTICE
from finejobs.store import libpq_url
from finejobs.testing import FakeClock


@pytest.fixture
def ran(queue: Queue) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    @queue.job("alert")
    def alert(payload: dict[str, Any]) -> None:
        seen.append(("alert", payload["shard"]))

    @queue.job("report")
    def report(payload: dict[str, Any]) -> None:
        seen.append(("report", payload["shard"]))

    return seen


def enqueue_all(queue: Queue) -> None:
    for kind in ("alert", "report"):
        for shard in ("district-1", "district-2"):
            queue.enqueue(kind, {"shard": shard}, shard=shard)


@pytest.mark.parametrize(("pause", "left_alone"), [
    ({"kind": "alert"}, {("alert", "district-1"), ("alert", "district-2")}),
    ({"shard": "district-1"}, {("alert", "district-1"), ("report", "district-1")}),
    ({"kind": "alert", "shard": "district-1"}, {("alert", "district-1")}),
])
def test_claims_leave_paused_work_alone_until_it_is_resumed(queue: Queue, ran: list[tuple[str, str]],
                                                           pause: dict[str, str],
                                                           left_alone: set[tuple[str, str]]) -> None:
    admin = Admin(queue, actor="test")
    admin.pause(**pause)
    enqueue_all(queue)
    worker = queue.worker(listen=False)
    worker.work_once()
    everything = {(k, s) for k in ("alert", "report") for s in ("district-1", "district-2")}
    assert set(ran) == everything - left_alone
    assert admin.stats(fresh=True).by_state["available"] == len(left_alone)
    assert admin.resume(**pause) is True
    worker.work_once()
    assert set(ran) == everything
    assert admin.resume(**pause) is False, "resuming twice is harmless"


def test_a_pause_is_stored_it_survives_a_new_worker_and_queue(queue: Queue, ran: list[tuple[str, str]],
                                                              clean_db: str, clock: FakeClock) -> None:
    Admin(queue).pause(shard="district-2", reason="maintenance")
    enqueue_all(queue)
    other = Queue(clean_db, clock=clock)  # another process's queue: nothing but the table tells it
    try:
        for kind in ("alert", "report"):
            other.job(kind)(lambda payload, k=kind: ran.append((k, payload["shard"])))
        other.worker(listen=False).work_once()
    finally:
        other.close()
    assert {s for _, s in ran} == {"district-1"}
    [shown] = Admin(queue).paused()
    assert (shown.shard, shown.kind, shown.reason) == ("district-2", None, "maintenance")


def test_a_running_worker_stops_claiming_within_a_second_of_a_pause(queue: Queue, ran: list[tuple[str, str]]) -> None:
    admin = Admin(queue)
    with queue.worker(poll_interval=0.05, listen=True) as worker:
        queue.enqueue("alert", {"shard": "district-1"}, shard="district-1")
        wait_until(lambda: ("alert", "district-1") in ran)
        admin.pause(shard="district-1")
        time.sleep(1.2)  # the pause cache refreshes every second (and on the NOTIFY at once)
        queue.enqueue("alert", {"shard": "district-1"}, shard="district-1")
        queue.enqueue("alert", {"shard": "district-2"}, shard="district-2")
        wait_until(lambda: ("alert", "district-2") in ran)
        time.sleep(0.3)
        assert ran.count(("alert", "district-1")) == 1, "no new claim in the paused shard"
        admin.resume(shard="district-1")
        wait_until(lambda: ran.count(("alert", "district-1")) == 2)
        assert not worker.ended()


def test_the_pause_notice_makes_a_worker_read_the_control_table_again(queue: Queue,
                                                                      ran: list[tuple[str, str]]) -> None:
    worker = queue.worker(listen=False)
    worker._claim(10)  # reads the (empty) control table
    Admin(queue).pause(kind="alert")
    worker._notified(PAUSE_NOTICE)
    enqueue_all(queue)
    claimed = worker._claim(10)
    assert {j.kind for j in claimed} == {"report"}


def test_bad_pauses_are_refused_and_write_nothing(queue: Queue) -> None:
    admin = Admin(queue)
    for bad in ({}, {"shard": "Bad Shard"}, {"kind": ""}, {"kind": "a\x00b"}, {"kind": "x", "reason": "r" * 9000}):
        with pytest.raises(FinejobsError):
            admin.pause(**bad)
    assert admin.paused() == []


# ---------------------------------------------------------------- the registry


def test_a_worker_keeps_its_registry_row_and_deletes_it_on_a_clean_stop(queue: Queue, ran: list[tuple[str, str]],
                                                                        clock: FakeClock) -> None:
    admin = Admin(queue)
    worker = queue.worker(listen=False, shards=["district-1", "district-2"], concurrency=7)
    assert worker.registry is not None
    worker.started_at = clock()
    worker.registry.run_once(clock())
    [row] = admin.workers()
    assert (row.id, row.concurrency, row.alive, row.shards) == (worker.worker_id, 7, True,
                                                                ("district-1", "district-2"))
    assert row.kinds == ("alert", "report") and row.in_flight == 0
    enqueue_all(queue)
    worker.work_once()
    worker.registry.run_once(clock())
    [row] = admin.workers()
    assert row.counters["succeeded"] == 4
    clock.advance(timedelta(minutes=5))
    [row] = admin.workers()
    assert not row.alive, "not refreshed for a while: shown as gone"
    worker.registry.stop()
    assert admin.workers() == []


def test_rows_of_workers_long_gone_are_pruned(queue: Queue, ran: list[tuple[str, str]], clock: FakeClock) -> None:
    old = queue.worker(listen=False, worker_id="old-worker")
    new = queue.worker(listen=False, worker_id="new-worker")
    assert old.registry is not None and new.registry is not None
    old.registry.run_once(clock())
    clock.advance(timedelta(hours=2))
    new.registry.run_once(clock())
    assert [w.id for w in Admin(queue).workers()] == ["new-worker"]


def test_a_running_worker_is_listed_while_it_runs(queue: Queue, ran: list[tuple[str, str]]) -> None:
    with queue.worker(listen=False, poll_interval=0.05) as worker:
        wait_until(lambda: any(w.id == worker.worker_id for w in Admin(queue).workers()))
    assert all(w.id != worker.worker_id for w in Admin(queue).workers()), "a clean stop deletes its row"


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_role_without_grants_on_the_new_tables_still_works(dml_role: Callable[..., str], database_url: str,
                                                            clock: FakeClock) -> None:
    """An app role from before migration 0006 (no grant on finejobs_pauses or finejobs_workers): workers go
    on working (unlisted, pauses unseen, both logged) instead of dying."""
    url = dml_role()
    role = url.split("://", 1)[1].split("@", 1)[0]
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE ALL ON finejobs_pauses, finejobs_workers FROM {}").format(sql.Identifier(role)))
    limited = Queue(url, clock=clock)
    done: list[int] = []
    try:
        limited.job("ok")(lambda payload: done.append(1))
        job = limited.enqueue("ok", {})
        worker = limited.worker(listen=False)
        assert worker.registry is not None
        worker.registry.run_once(clock())  # logs, does not raise
        worker.work_once()
        assert done == [1] and limited.get(job.id).state.value == "succeeded"
    finally:
        limited.close()


def test_a_notification_is_handed_on_the_moment_it_arrives(queue: Queue) -> None:
    """The listener's wait must not sit out its timeout before waking the producer (a bench run found
    enqueue-to-start at 250 ms when it did)."""
    import threading

    notes = queue.store.listen()
    got: list[tuple[str, float]] = []
    try:
        waiter = threading.Thread(target=lambda: notes.wait(5.0, lambda p: got.append((p, time.monotonic())),
                                                            stop=lambda: bool(got)))
        waiter.start()
        time.sleep(0.2)  # let it LISTEN-wait
        sent = time.monotonic()
        with psycopg.connect(libpq_url(queue.url), autocommit=True) as conn:
            conn.execute("SELECT pg_notify('finejobs', 'district-1')")
        waiter.join(6.0)
        assert got and got[0][0] == "district-1"
        assert got[0][1] - sent < 1.0, "handed on at once, not after the 5 s timeout"
    finally:
        notes.close()
