"""The scheduler on a real PostgreSQL: one job per tick (also with racing schedulers), misfire and overlap
policies, expiry, COUNT, adaptive schedules, schedules declared in code, broken schedules."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import finejobs
from finejobs import Adaptive, Cron, Every, Idle, Once, Queue
from finejobs.runtime.scheduler import Scheduler
from finejobs.testing import FakeClock

DB = psycopg.Connection[tuple[Any, ...]]
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # the FakeClock's start (tests/conftest.py)
SECOND = timedelta(seconds=1)


def scheduler(queue: Queue) -> Scheduler:
    worker = queue.worker(listen=False)
    assert worker.scheduler is not None
    return worker.scheduler


def ticks(db: DB, name: str = "s") -> list[datetime]:
    rows = db.execute("SELECT j.fire_at FROM finejobs_jobs j JOIN finejobs_schedules s ON s.id = j.schedule_id "
                      "WHERE s.name = %s ORDER BY j.fire_at", (name,)).fetchall()
    return [r[0] for r in rows]


def finish_all(db: DB) -> None:
    db.execute("UPDATE finejobs_jobs SET state = 'succeeded', finished_at = now() WHERE state = 'available'")


# ---------------------------------------------------------------- schema


def test_schedules_table_matches_its_declaration(db: DB) -> None:
    from sqlalchemy.dialects import postgresql as pg

    from finejobs.store import schedules_table

    rows = db.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                      "WHERE table_name = 'finejobs_schedules' ORDER BY ordinal_position").fetchall()
    assert [(name, nullable == "YES") for name, nullable in rows] == [
        (c.name, bool(c.nullable)) for c in schedules_table.columns]
    assert all(isinstance(c.type.compile(dialect=pg.dialect()), str) for c in schedules_table.columns)


def test_a_second_job_for_the_same_tick_is_impossible(db: DB) -> None:
    db.execute("INSERT INTO finejobs_jobs (kind, schedule_id, fire_at) VALUES ('k', 1, %s)", (T0,))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("INSERT INTO finejobs_jobs (kind, schedule_id, fire_at) VALUES ('k', 1, %s)", (T0,))


# ---------------------------------------------------------------- one job per tick


def test_each_tick_becomes_one_job(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    queue.schedules.add("s", ping, Every(minutes=1), payload={"n": 1})
    s = scheduler(queue)
    assert s.run_once(clock()) == 1  # 08:00 is a tick: it fires at once
    assert s.run_once(clock()) == 0
    clock.advance(30 * SECOND)
    assert s.run_once(clock()) == 0
    clock.advance(30 * SECOND)
    assert s.run_once(clock()) == 1
    assert ticks(db) == [T0, T0 + 60 * SECOND]
    job = queue.jobs(kind="ping")[0]
    assert job.payload == {"n": 1} and job.run_at == T0 + 60 * SECOND
    assert job.expires_at == T0 + 120 * SECOND  # default expiry: until the next tick


def test_racing_schedulers_make_exactly_one_job_per_tick(queue: Queue, clean_db: str, db: DB, ping: Any) -> None:
    """Six schedulers (each its own queue and pool) fire the same schedules at the same moments."""
    queue.schedules.add("s", ping, Every(seconds=10))
    queue.schedules.add("t", ping, Cron("*/20 * * * * *"))
    clock = FakeClock(T0)
    queues = [Queue(clean_db, clock=clock) for _ in range(6)]
    try:
        schedulers = [scheduler(q) for q in queues]
        for step in range(30):
            clock.set(T0 + step * 5 * SECOND)
            barrier = threading.Barrier(len(schedulers))
            errors: list[BaseException] = []

            def run(s: Scheduler, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
                try:
                    barrier.wait()
                    s.run_once(clock())
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
            assert errors == []
    finally:
        for q in queues:
            q.close()
    assert ticks(db, "s") == [T0 + i * 10 * SECOND for i in range(15)]
    assert ticks(db, "t") == [T0 + i * 20 * SECOND for i in range(8)]
    runs = dict(db.execute("SELECT name, runs FROM finejobs_schedules").fetchall())
    assert runs == {"s": 15, "t": 8}


def test_a_lost_compare_and_set_writes_nothing(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    queue.schedules.add("s", ping, Every(minutes=1))
    row = queue.store.schedule_get(name="s", now=clock())
    assert row is not None
    assert scheduler(queue).run_once(clock()) == 1
    # the row we read is now stale:
    stale = queue.store.schedule_fire(schedule_id=row.id, version=row.version, expected=row.next_fire_at,
                                      next_fire_at=T0 + 60 * SECOND, jobs=[], skipped=0, now=clock())
    assert stale is None
    assert ticks(db) == [T0]


# ---------------------------------------------------------------- misfire policies (downtime)


@pytest.mark.parametrize(("misfire", "expected_ticks", "expected_skipped"), [
    ("coalesce", [T0 + 10 * 60 * SECOND], 10),
    ("all", [T0 + i * 60 * SECOND for i in range(8, 11)], 8),  # misfire_limit=3: the latest three
    ("skip", [], 11),
])
def test_misfire_after_downtime(queue: Queue, clock: FakeClock, db: DB, ping: Any, misfire: str,
                                expected_ticks: list[datetime], expected_skipped: int) -> None:
    queue.schedules.add("s", ping, Every(minutes=1), misfire=misfire, misfire_limit=3,
                        misfire_grace=timedelta(seconds=10))
    clock.advance(timedelta(minutes=10, seconds=30))  # down from 08:00 to 08:10:30: ticks 08:00..08:10 missed
    scheduler(queue).run_once(clock())
    assert ticks(db) == expected_ticks
    schedule = queue.schedules.get("s")
    assert schedule.skipped == expected_skipped
    assert schedule.next_fire_at == T0 + 11 * 60 * SECOND


def test_skip_still_runs_a_tick_within_the_grace(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    queue.schedules.add("s", ping, Every(minutes=1), misfire="skip", misfire_grace=timedelta(seconds=10))
    clock.advance(5 * SECOND)
    scheduler(queue).run_once(clock())
    assert ticks(db) == [T0]


def test_catch_up_jobs_get_a_window_from_now(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    queue.schedules.add("s", ping, Every(minutes=1), misfire="all")
    clock.advance(timedelta(minutes=5))
    scheduler(queue).run_once(clock())
    jobs = sorted(queue.jobs(kind="ping"), key=lambda j: j.run_at)
    assert len(jobs) == 6
    assert all(j.expires_at == clock() + 60 * SECOND for j in jobs)  # not already expired
    assert [j.run_at for j in jobs] == [T0 + i * 60 * SECOND for i in range(6)]


# ---------------------------------------------------------------- overlap policies


@pytest.mark.parametrize(("overlap", "expected"), [
    ("skip", [T0, T0 + 120 * SECOND]), ("allow", [T0, T0 + 60 * SECOND]), ("wait", [T0, T0 + 60 * SECOND]),
])
def test_overlap(queue: Queue, clock: FakeClock, db: DB, ping: Any, overlap: str, expected: list[datetime]) -> None:
    queue.schedules.add("s", ping, Every(minutes=1), overlap=overlap, expires_in=timedelta(hours=1))
    s = scheduler(queue)
    s.run_once(clock())
    db.execute("UPDATE finejobs_jobs SET state = 'running', lease_owner = 'w', attempt = 1")
    clock.advance(60 * SECOND)
    s.run_once(clock())  # 08:01: the 08:00 run is still running
    clock.advance(30 * SECOND)
    db.execute("UPDATE finejobs_jobs SET state = 'succeeded', lease_owner = NULL, finished_at = now()")
    s.run_once(clock())  # 08:01:30: finished; 'wait' fires the held 08:01 tick now
    clock.advance(30 * SECOND)
    s.run_once(clock())  # 08:02
    assert ticks(db)[:2] == expected


def test_an_expired_waiting_run_does_not_block_the_next_tick(queue: Queue, clock: FakeClock, db: DB,
                                                             ping: Any) -> None:
    queue.schedules.add("s", ping, Every(minutes=1))  # overlap=skip, expiry until the next tick
    s = scheduler(queue)
    s.run_once(clock())
    clock.advance(60 * SECOND)  # nobody ran the 08:00 job: it expires now, maintenance has not run yet
    s.run_once(clock())
    assert ticks(db) == [T0, T0 + 60 * SECOND]


# ---------------------------------------------------------------- bounded rules


def test_every_5_seconds_10_times_makes_10_jobs_then_finishes(queue: Queue, clock: FakeClock, db: DB,
                                                              ping: Any) -> None:
    queue.schedules.add("s", ping, Every(seconds=5, start=T0, count=10))
    s = scheduler(queue)
    assert queue.schedules.get("s").runs_left == 10
    for _ in range(80):
        s.run_once(clock())
        finish_all(db)
        clock.advance(SECOND)
    assert ticks(db) == [T0 + i * 5 * SECOND for i in range(10)]
    done = queue.schedules.get("s")
    assert (done.status, done.runs, done.runs_left, done.next_fire_at) == ("finished", 10, 0, None)


def test_end_bounds_a_schedule_inclusively(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    queue.schedules.add("s", ping, Every(minutes=1), end=T0 + 3 * 60 * SECOND)
    s = scheduler(queue)
    for _ in range(6):
        s.run_once(clock())
        finish_all(db)
        clock.advance(60 * SECOND)
    assert ticks(db) == [T0 + i * 60 * SECOND for i in range(4)]


def test_once(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    queue.schedules.add("s", ping, Once(T0 + 90 * SECOND))
    s = scheduler(queue)
    for _ in range(4):
        s.run_once(clock())
        clock.advance(60 * SECOND)
    assert ticks(db) == [T0 + 90 * SECOND]
    assert queue.jobs(kind="ping")[0].expires_at is None


# ---------------------------------------------------------------- adaptive


def test_adaptive_waits_a_delay_chosen_by_the_outcome(queue: Queue, clock: FakeClock, db: DB) -> None:
    answers = iter(["work", "idle", "boom", "timeout"])

    @queue.job("poll", retry=finejobs.Retry(max_attempts=1))
    def poll(payload: dict[str, Any]) -> object:
        answer = next(answers)
        if answer == "boom":
            raise RuntimeError("gateway down")
        if answer == "timeout":
            raise TimeoutError("no answer")
        return Idle if answer == "idle" else None

    queue.schedules.add("s", poll, Adaptive(on_success=timedelta(minutes=1), on_idle=timedelta(minutes=10),
                                            on_error=timedelta(minutes=2), on_timeout=timedelta(minutes=5)))
    worker = queue.worker(listen=False)
    assert worker.scheduler is not None
    fired: list[datetime] = []
    for _ in range(4):
        schedule = queue.schedules.get("s")
        assert schedule.next_fire_at is not None
        clock.set(schedule.next_fire_at)
        assert worker.scheduler.run_once(clock()) == 1
        fired.append(clock())
        assert queue.schedules.get("s").next_fire_at is None  # waiting for the run
        clock.advance(3 * SECOND)
        worker.work_once()  # finishes at +3s
        worker.scheduler.run_once(clock())  # re-arms from the outcome
    assert [b - a for a, b in itertools.pairwise(fired)] == [
        timedelta(minutes=1, seconds=3), timedelta(minutes=10, seconds=3), timedelta(minutes=2, seconds=3)]
    assert queue.schedules.get("s").next_fire_at == clock() + timedelta(minutes=5)
    outcomes = [r.outcome for r in queue.schedules.runs("s")]
    assert outcomes == ["timeout", "error", "idle", "success"]


# ---------------------------------------------------------------- declared in code


def test_declared_schedules_are_upserted_at_worker_start(clean_db: str, clock: FakeClock, db: DB) -> None:
    def make_queue(expr: str) -> Queue:
        q = Queue(clean_db, clock=clock)

        @q.job("report", schedule=Cron(expr, tz="Europe/Madrid"))
        def report(payload: dict[str, Any]) -> None:
            pass

        q.schedule("policy-renewals", report, Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"),
                   payload={"batch": 1}, description="weekly renewals")
        return q

    first = make_queue("0 7 * * *")
    try:
        assert sorted(first.schedules.sync()) == ["policy-renewals", "report"]
        assert first.schedules.sync() == []  # unchanged: nothing written
        first.schedules.pause("report")
        before = first.schedules.get("report")
    finally:
        first.close()
    second = make_queue("0 8 * * *")  # a new deploy changes the rule
    try:
        second.worker(listen=False).scheduler.declare()  # type: ignore[union-attr]
        after = second.schedules.get("report")
        assert after.paused, "operators' pause survives a deploy"
        assert after.next_fire_at != before.next_fire_at
        assert after.next_fire_at == datetime(2026, 11, 23, 8, 0, tzinfo=UTC) - timedelta(hours=1)
        renewals = second.schedules.get("policy-renewals")
        assert (renewals.payload, renewals.description, renewals.source) == ({"batch": 1}, "weekly renewals", "code")
    finally:
        second.close()


def test_declaring_validates_the_payload(queue: Queue) -> None:
    import pydantic

    class Batch(pydantic.BaseModel):
        size: int

    @queue.job("batch", model=Batch)
    def batch(payload: Batch) -> None:
        pass

    with pytest.raises(finejobs.PayloadError):
        queue.schedule("b", batch, Every(hours=1), payload={"size": "many"})
    with pytest.raises(finejobs.PayloadError):
        queue.job("batch2", model=Batch, schedule=Every(hours=1))(lambda payload: None)  # type: ignore[arg-type]
    assert "batch2" not in queue.kinds
    assert queue.schedule("b", batch, Every(hours=1), payload={"size": 3}).payload == {"size": 3}
    with pytest.raises(ValueError, match="already declared"):
        queue.schedule("b", batch, Every(hours=1), payload={"size": 3})


# ---------------------------------------------------------------- broken schedules never kill the worker


def test_a_broken_rule_marks_the_schedule_failed(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    queue.schedules.add("s", ping, Every(minutes=1))
    queue.schedules.add("ok", ping, Every(minutes=1))
    db.execute("""UPDATE finejobs_schedules SET rule = '{"type": "cron", "expr": "bad", "tz": "UTC"}'
                  WHERE name = 's'""")
    assert scheduler(queue).run_once(clock()) == 1
    broken = queue.schedules.get("s")
    assert broken.status == "failed" and broken.error is not None and broken.next_fire_at is None
    fixed = queue.schedules.update("s", rule=Every(minutes=5))
    assert (fixed.status, fixed.error, fixed.next_fire_at) == ("active", None, T0)


def test_the_worker_fires_schedules_while_it_runs(clean_db: str, db: DB) -> None:
    q = Queue(clean_db)
    done = threading.Event()

    @q.job("tick", schedule=Every(seconds=1))
    def tick(payload: dict[str, Any]) -> None:
        done.set()

    try:
        with q.worker(schedule_interval=0.05, poll_interval=0.05):
            assert done.wait(10), "no scheduled job ran"
    finally:
        q.close()
    assert db.execute("SELECT count(*) FROM finejobs_jobs WHERE state = 'succeeded' AND schedule_id IS NOT NULL"
                      ).fetchone() >= (1,)  # type: ignore[operator]
