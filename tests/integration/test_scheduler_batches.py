"""The scheduler in batches: one pass takes many due schedules at a time (locked with SKIP LOCKED), keeps every
policy (misfire, overlap, counts, paused, end), splits the due rows between workers with each tick made
exactly once, and never skips a tick while it is up (docs/schedules.md, "Many schedules")."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import finejobs
from finejobs import Every, Queue
from finejobs.runtime.scheduler import Scheduler
from finejobs.testing import FakeClock

DB = psycopg.Connection[tuple[Any, ...]]
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # the FakeClock's start (tests/conftest.py)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def scheduler(queue: Queue, batch: int) -> Scheduler:
    worker = queue.worker(listen=False, schedule_batch=batch)  # Worker(schedule_batch=), --schedule-batch
    assert worker.scheduler is not None and worker.scheduler.batch == batch
    return worker.scheduler


@pytest.mark.parametrize("batch", [0, -1, 100_001, 2.5, "10"])
def test_a_schedule_batch_out_of_bounds_is_refused(queue: Queue, batch: Any) -> None:
    with pytest.raises(finejobs.FinejobsError, match="schedule_batch"):
        queue.worker(listen=False, schedule_batch=batch)


def ticks_by_name(db: DB) -> dict[str, list[datetime]]:
    rows = db.execute("SELECT s.name, j.fire_at FROM finejobs_schedules s "
                      "LEFT JOIN finejobs_jobs j ON j.schedule_id = s.id ORDER BY s.name, j.fire_at").fetchall()
    made: dict[str, list[datetime]] = {}
    for name, fire_at in rows:
        made.setdefault(name, [])
        if fire_at is not None:
            made[name].append(fire_at)
    return made


def add_many(queue: Queue, kind: Any, n: int, rule: Any, *, prefix: str = "s", **options: Any) -> None:
    """n schedules in one statement (as an operator's import would), the same columns queue.schedules.add
    writes; the FakeClock's T0 is their first tick."""
    spec = queue.schedules.add(f"{prefix}-0", kind, rule, **options)
    with psycopg.connect(queue.store.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO finejobs_schedules (name, description, kind, payload, shard, priority, max_attempts, rule, "
            "timezone, start_at, end_at, misfire, misfire_limit, misfire_grace, overlap, expires_in, next_fire_at, "
            "fired, created_at, updated_at) "
            "SELECT %s || '-' || i, description, kind, payload, shard, priority, max_attempts, rule, timezone, "
            "start_at, end_at, misfire, misfire_limit, misfire_grace, overlap, expires_in, next_fire_at, fired, "
            "created_at, updated_at FROM finejobs_schedules, generate_series(1, %s) AS i WHERE name = %s",
            (prefix, n - 1, spec.name))


def test_one_pass_fires_every_policy_in_batches(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    """Ten schedules of each policy, fired in batches of 7 (so a batch mixes them, and the schedules that
    overlap="wait" holds stay due without being taken again in the same pass)."""
    every = Every(minutes=1)
    for i in range(10):
        queue.schedules.add(f"coalesce-{i}", ping, every)
        queue.schedules.add(f"all-{i}", ping, every, misfire="all", misfire_limit=3)
        queue.schedules.add(f"skip-{i}", ping, every, misfire="skip", misfire_grace=10 * SECOND)
        for overlap in ("skip", "wait", "allow"):
            queue.schedules.add(f"overlap-{overlap}-{i}", ping, every, overlap=overlap, expires_in=timedelta(hours=1))
        queue.schedules.add(f"count-{i}", ping, Every(minutes=1, start=T0, count=2))
        queue.schedules.add(f"paused-{i}", ping, every)
        queue.schedules.pause(f"paused-{i}")
        queue.schedules.add(f"end-{i}", ping, every, end=T0 + 5 * MINUTE)
    s = scheduler(queue, batch=7)
    assert s.run_once(clock()) == 80  # 08:00: every active schedule fires its first tick
    db.execute("UPDATE finejobs_jobs SET state = 'running', lease_owner = 'w', attempt = 1 WHERE schedule_id IN "
               "(SELECT id FROM finejobs_schedules WHERE name LIKE 'overlap-%%')")
    db.execute("UPDATE finejobs_jobs SET state = 'succeeded', finished_at = now() WHERE state = 'available'")
    clock.advance(10 * MINUTE + 30 * SECOND)  # a downtime: 08:01 .. 08:10 are missed
    s.run_once(clock())
    made = ticks_by_name(db)
    expected = {
        "coalesce": [T0, T0 + 10 * MINUTE],
        "all": [T0, T0 + 8 * MINUTE, T0 + 9 * MINUTE, T0 + 10 * MINUTE],
        "skip": [T0],  # 30 s late, beyond the 10 s grace: a downtime's tick
        "overlap-skip": [T0], "overlap-wait": [T0], "overlap-allow": [T0, T0 + 10 * MINUTE],
        "count": [T0, T0 + 10 * MINUTE], "paused": [], "end": [T0, T0 + 5 * MINUTE],
    }
    for name, fires in made.items():
        assert fires == expected[name.rsplit("-", 1)[0]], name
    state = {r.name: r for r in queue.schedules.list()}
    assert {(r.skipped, r.next_fire_at) for n, r in state.items() if n.startswith("coalesce")} == {
        (9, T0 + 11 * MINUTE)}
    assert {r.skipped for n, r in state.items() if n.startswith("all")} == {7}
    assert {r.skipped for n, r in state.items() if n.startswith("skip")} == {10}
    assert {r.skipped for n, r in state.items() if n.startswith("overlap-skip")} == {10}
    assert {(r.skipped, r.next_fire_at) for n, r in state.items() if n.startswith("overlap-wait")} == {
        (0, T0 + MINUTE)}  # held due until its run finishes
    assert {(r.runs, r.runs_left, r.next_fire_at) for n, r in state.items() if n.startswith("count")} == {
        (2, 0, None)}
    assert {(r.runs, r.next_fire_at) for n, r in state.items() if n.startswith("end")} == {(2, None)}
    assert {r.next_fire_at for n, r in state.items() if n.startswith("paused")} == {T0}
    last_jobs = db.execute("SELECT count(*) FROM finejobs_schedules s JOIN finejobs_jobs j ON j.id = s.last_job_id "
                           "WHERE j.fire_at = s.last_fire_at AND j.schedule_id = s.id").fetchone()
    assert last_jobs == (80,)  # runs, last_job_id and last_fire_at kept as one schedule at a time kept them
    db.execute("UPDATE finejobs_jobs SET state = 'succeeded', lease_owner = NULL, finished_at = now()")
    s.run_once(clock())  # the held ticks of overlap="wait" now run (after a downtime: coalesced)
    assert {n: f for n, f in ticks_by_name(db).items() if n.startswith("overlap-wait")} == {
        f"overlap-wait-{i}": [T0, T0 + 10 * MINUTE] for i in range(10)}


def test_two_workers_split_the_due_schedules(queue: Queue, clean_db: str, clock: FakeClock, db: DB,
                                             ping: Any) -> None:
    """While worker A holds its batch (inside its transaction), worker B's pass takes the other rows."""
    add_many(queue, ping, 2000, Every(seconds=10))
    qa, qb = Queue(clean_db, clock=clock), Queue(clean_db, clock=clock)
    try:
        a, b = scheduler(qa, batch=500), scheduler(qb, batch=300)
        by_b: list[int] = []
        plain = a._decide

        def decide_while_b_runs(rows: Any, **kwargs: Any) -> Any:
            if not by_b:
                by_b.append(b.run_once(clock()))
            return plain(rows, **kwargs)

        a._decide = decide_while_b_runs  # type: ignore[method-assign]
        by_a = a.run_once(clock())
        assert (by_a, by_b) == (500, [1500])  # A: its one batch; B: everything A did not hold
    finally:
        qa.close()
        qb.close()
    assert db.execute("SELECT count(*), count(DISTINCT schedule_id) FROM finejobs_jobs").fetchone() == (2000, 2000)


def test_racing_workers_make_each_tick_exactly_once(queue: Queue, clean_db: str, clock: FakeClock, db: DB,
                                                    ping: Any) -> None:
    add_many(queue, ping, 2000, Every(seconds=10))
    queues = [Queue(clean_db, clock=clock) for _ in range(2)]
    try:
        schedulers = [scheduler(q, batch=250) for q in queues]
        made = Counter[int]()
        for step in range(3):
            clock.set(T0 + step * 10 * SECOND)
            barrier = threading.Barrier(len(schedulers))
            errors: list[BaseException] = []

            def run(s: Scheduler, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
                try:
                    barrier.wait()
                    made[id(s)] += s.run_once(clock())
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
            assert errors == []
    finally:
        for q in queues:
            q.close()
    assert sum(made.values()) == 6000
    rows = db.execute("SELECT count(*), count(DISTINCT (schedule_id, fire_at)), min(fire_at), max(fire_at) "
                      "FROM finejobs_jobs").fetchone()
    assert rows == (6000, 6000, T0, T0 + 20 * SECOND)
    per_schedule = db.execute("SELECT DISTINCT runs, skipped, next_fire_at FROM finejobs_schedules").fetchall()
    assert per_schedule == [(3, 0, T0 + 30 * SECOND)]


def test_a_worker_that_is_up_skips_no_tick(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    """misfire="skip" with no grace at all: 400 schedules every second, passes 1 to 3 seconds apart (a pass
    that took longer than the rules' period); every tick runs. A downtime then skips as it should."""
    add_many(queue, ping, 400, Every(seconds=1), misfire="skip", misfire_grace=timedelta(0))
    s = scheduler(queue, batch=64)
    for step in (0, 1, 1, 3, 2, 1):
        clock.advance(step * SECOND)
        s.run_once(clock())
    made = ticks_by_name(db)
    assert len(made) == 400
    assert all(fires == [T0 + i * SECOND for i in range(9)] for fires in made.values())
    assert db.execute("SELECT DISTINCT skipped FROM finejobs_schedules").fetchall() == [(0,)]
    clock.advance(timedelta(minutes=1))  # no pass for a minute: a downtime
    s.run_once(clock())
    assert db.execute("SELECT DISTINCT skipped FROM finejobs_schedules").fetchall() == [(59,)]
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (400 * 10,)  # 08:01:08, on time


def test_a_batch_the_database_refuses_is_fired_one_at_a_time(queue: Queue, clock: FakeClock, db: DB,
                                                             ping: Any) -> None:
    """Only the schedule whose job the database refuses is marked failed; the others of its batch fire."""
    for i in range(5):
        queue.schedules.add(f"ok-{i}", ping, Every(minutes=1))
    queue.schedules.add("refused", "refused-kind", Every(minutes=1))
    db.execute("ALTER TABLE finejobs_jobs ADD CONSTRAINT test_refused CHECK (kind <> 'refused-kind') NOT VALID")
    try:
        s = scheduler(queue, batch=100)
        assert s.run_once(clock()) == 5
        broken = queue.schedules.get("refused")
        assert broken.status == "failed" and broken.next_fire_at is None
        assert broken.error is not None and "test_refused" in broken.error
        clock.advance(MINUTE)
        assert s.run_once(clock()) == 5  # the next pass is a batch again
    finally:
        db.execute("ALTER TABLE finejobs_jobs DROP CONSTRAINT test_refused")
    assert sorted(ticks_by_name(db)["ok-0"]) == [T0, T0 + MINUTE]
