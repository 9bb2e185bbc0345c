"""Counted schedules on a real PostgreSQL, driven by the FakeClock: a schedule keeps its count through pauses,
misfires, skips and deploys (finejobs_schedules.fired, migration 0005); limits refuse before writing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import finejobs
from finejobs import Adaptive, Every, InvalidJobOptions, PayloadError, Queue, RRule
from finejobs.limits import MAX_TIME
from finejobs.runtime.scheduler import Scheduler
from finejobs.testing import FakeClock
from tests.integration.test_scheduler import scheduler

DB = psycopg.Connection[tuple[Any, ...]]
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # the FakeClock's start (tests/conftest.py)
HOUR = timedelta(hours=1)


def ticks(db: DB, name: str = "s") -> list[datetime]:
    rows = db.execute("SELECT j.fire_at FROM finejobs_jobs j JOIN finejobs_schedules s ON s.id = j.schedule_id "
                      "WHERE s.name = %s ORDER BY j.fire_at", (name,)).fetchall()
    return [r[0] for r in rows]


def finish_all(db: DB, at: datetime) -> None:
    db.execute("UPDATE finejobs_jobs SET state = 'succeeded', finished_at = %s WHERE state = 'available'", (at,))


def run_for(s: Scheduler, clock: FakeClock, db: DB, until: datetime, step: timedelta = timedelta(minutes=20)) -> None:
    while clock() < until:
        s.run_once(clock())
        finish_all(db, clock())
        clock.advance(step)


COUNTED = [
    pytest.param(lambda: Every(hours=1, start=T0, count=6), id="every-count"),
    pytest.param(lambda: RRule("FREQ=HOURLY;COUNT=6", start=T0), id="rrule-count"),
]


# ---------------------------------------------------------------- pause and resume keep the count


@pytest.mark.parametrize("misfire", ["coalesce", "all", "skip"])
@pytest.mark.parametrize("make_rule", COUNTED)
def test_a_counted_schedule_paused_and_resumed_makes_exactly_its_count(
        queue: Queue, clock: FakeClock, db: DB, ping: Any, make_rule: Any, misfire: str) -> None:
    queue.schedules.add("s", ping, make_rule(), misfire=misfire, misfire_grace=timedelta(minutes=10))
    s = scheduler(queue)
    run_for(s, clock, db, T0 + timedelta(hours=1, minutes=30))  # 08:00 and 09:00 run
    assert ticks(db) == [T0, T0 + HOUR]
    queue.schedules.pause("s")
    clock.set(T0 + timedelta(hours=5, minutes=30))  # 10:00 .. 13:00 pass while it is paused
    resumed = queue.schedules.resume("s")
    assert (resumed.status, resumed.next_fire_at, resumed.runs_left) == ("active", T0 + 6 * HOUR, 4)
    clock.set(T0 + timedelta(hours=8, minutes=30))  # and then a downtime: 14:00, 15:00, 16:00 are missed
    run_for(s, clock, db, T0 + timedelta(hours=30))
    made = ticks(db)
    assert len(made) == 6, made
    expected_after_downtime = {
        "coalesce": [T0 + 8 * HOUR],  # the latest missed tick, once: one run
        "all": [T0 + 6 * HOUR, T0 + 7 * HOUR, T0 + 8 * HOUR],  # each missed tick
        "skip": [],  # nothing late
    }[misfire]
    following = [T0 + (9 + i) * HOUR for i in range(4 - len(expected_after_downtime))]
    assert made == [T0, T0 + HOUR, *expected_after_downtime, *following]
    done = queue.schedules.get("s")
    assert (done.status, done.runs, done.fired, done.runs_left, done.next_fire_at) == ("finished", 6, 6, 0, None)
    last_job = max(queue.jobs(kind="ping"), key=lambda j: j.run_at)
    assert last_job.expires_at is None  # the last run of a counted rule has no tick after it


def test_skipped_ticks_and_run_now_do_not_use_up_the_count(queue: Queue, clock: FakeClock, db: DB,
                                                          ping: Any) -> None:
    queue.schedules.add("s", ping, Every(hours=1, start=T0, count=3), expires_in=timedelta(days=1))
    s = scheduler(queue)
    s.run_once(clock())  # 08:00 runs ...
    db.execute("UPDATE finejobs_jobs SET state = 'running', lease_owner = 'w', attempt = 1")
    clock.advance(HOUR)
    s.run_once(clock())  # ... and is still running at 09:00: overlap=skip skips that tick
    db.execute("UPDATE finejobs_jobs SET state = 'succeeded', lease_owner = NULL, finished_at = %s", (clock(),))
    clock.advance(timedelta(minutes=5))
    queue.schedules.skip_next("s")  # an operator skips 10:00
    queue.schedules.run_now("s")  # and makes a run by hand at 09:05: not a tick
    assert queue.schedules.get("s").runs_left == 2
    finish_all(db, clock())
    run_for(s, clock, db, T0 + 10 * HOUR)
    assert ticks(db) == [T0, T0 + timedelta(hours=1, minutes=5), T0 + 3 * HOUR, T0 + 4 * HOUR]
    done = queue.schedules.get("s")
    assert (done.fired, done.runs, done.skipped, done.status) == (3, 4, 2, "finished")


def test_a_new_start_begins_a_new_series_other_changes_keep_the_count(queue: Queue, clock: FakeClock, db: DB,
                                                                      ping: Any) -> None:
    queue.schedules.add("s", ping, Every(hours=1, start=T0, count=2))
    s = scheduler(queue)
    run_for(s, clock, db, T0 + 3 * HOUR)
    assert queue.schedules.get("s").status == "finished"
    more = queue.schedules.update("s", rule=Every(hours=1, start=T0, count=3))  # one more run, not three
    assert (more.fired, more.runs_left, more.next_fire_at) == (2, 1, T0 + 3 * HOUR)
    run_for(s, clock, db, T0 + 6 * HOUR)
    assert len(ticks(db)) == 3 and queue.schedules.get("s").status == "finished"
    lowered = queue.schedules.update("s", rule=Every(hours=2, start=T0, count=2))  # already used up
    assert (lowered.status, lowered.next_fire_at) == ("finished", None)
    fresh = queue.schedules.update("s", rule=Every(hours=1, start=T0 + 10 * HOUR, count=2))
    assert (fresh.fired, fresh.runs_left, fresh.next_fire_at) == (0, 2, T0 + 10 * HOUR)


def test_a_declared_schedule_keeps_its_count_across_deploys(clean_db: str, clock: FakeClock, db: DB) -> None:
    def deploy(rule: finejobs.Rule) -> Queue:
        q = Queue(clean_db, clock=clock)

        @q.job("report")
        def report(payload: dict[str, Any]) -> None:
            pass

        q.schedule("reports", report, rule)
        q.schedules.sync()
        return q

    first = deploy(Every(hours=1, start=T0, count=2))
    try:
        run_for(scheduler(first), clock, db, T0 + 3 * HOUR)
        assert first.schedules.get("reports").fired == 2
    finally:
        first.close()
    second = deploy(Every(hours=1, start=T0, count=4))  # same start: 2 more
    try:
        assert second.schedules.get("reports").runs_left == 2
        run_for(scheduler(second), clock, db, T0 + 8 * HOUR)
        assert len(ticks(db, "reports")) == 4
    finally:
        second.close()
    third = deploy(Every(hours=1, start=T0 + 10 * HOUR, count=4))  # a new start: a new series of 4
    try:
        assert (third.schedules.get("reports").fired, third.schedules.get("reports").runs_left) == (0, 4)
    finally:
        third.close()


# ---------------------------------------------------------------- migration 0005 keeps existing rows valid


def test_migration_0005_counts_the_runs_existing_schedules_made(empty_database_url: str) -> None:
    q = Queue(empty_database_url)
    try:
        q.store.migrate(target=4)
        with psycopg.connect(empty_database_url.replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as conn:
            conn.execute("""INSERT INTO finejobs_schedules (name, kind, rule, runs, next_fire_at)
                            VALUES ('old', 'k', '{"type": "every", "seconds": 3600, "months": 0, "tz": "UTC",
                                    "start": "2026-11-22T08:00:00+00:00", "count": 6, "until": null}', 2, %s),
                                   ('new', 'k', '{"type": "cron", "expr": "0 6 * * *", "tz": "UTC"}', 0, NULL)""",
                         (T0 + 2 * HOUR,))
            assert q.store.migrate()[0] == 5
            rows: dict[str, int] = dict(conn.execute("SELECT name, fired FROM finejobs_schedules").fetchall())
            assert rows == {"old": 2, "new": 0}
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("UPDATE finejobs_schedules SET fired = -1")
        old = q.schedules.get("old")
        assert (old.fired, old.runs_left, old.status) == (2, 4, "active")
    finally:
        q.close()


# ---------------------------------------------------------------- the end of the time range


def test_a_schedule_at_the_end_of_the_time_range_finishes_quietly(queue: Queue, clock: FakeClock, db: DB,
                                                                  ping: Any) -> None:
    clock.set(MAX_TIME - timedelta(minutes=2))
    queue.schedules.add("s", ping, Every(minutes=1))
    queue.schedules.add("a", ping, Adaptive(timedelta(days=36_525)))
    s = scheduler(queue)
    for _ in range(5):
        s.run_once(clock())
        finish_all(db, clock())
        clock.advance(timedelta(minutes=1))
    assert ticks(db) == [MAX_TIME - timedelta(minutes=2), MAX_TIME - timedelta(minutes=1), MAX_TIME]
    assert all(j.expires_at is None or j.expires_at <= MAX_TIME for j in queue.jobs(kind="ping"))
    every = queue.schedules.get("s")
    assert (every.status, every.error, every.next_fire_at) == ("finished", None, None), every
    adaptive = queue.schedules.get("a")  # ran once; its next run would be a century past the range
    assert (adaptive.runs, adaptive.error, adaptive.next_fire_at) == (1, None, None), adaptive


# ---------------------------------------------------------------- refusals write nothing


@pytest.mark.parametrize(("call", "error"), [
    (lambda q, k: q.schedules.add("", k, Every(hours=1)), InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), max_attempts=0), InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), max_attempts=10_001), InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), misfire_grace=timedelta.max), InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), expires_in=timedelta.max), InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), start=datetime.max.replace(tzinfo=UTC)),
     InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), end=T0 - HOUR, start=T0), InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1, start=T0), end=T0 - HOUR), InvalidJobOptions),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), payload={"blob": "x" * 200}), PayloadError),
    (lambda q, k: q.schedules.add("s", k, Every(hours=1), payload={"a": "\x00"}), PayloadError),
    (lambda q, k: q.schedule("s", k, Every(hours=1), max_attempts=0), InvalidJobOptions),
    (lambda q, k: q.schedule("s", k, Every(hours=1), payload={"blob": "x" * 200}), PayloadError),
])
def test_refused_schedules_write_nothing(clean_db: str, clock: FakeClock, db: DB, call: Any, error: Any) -> None:
    q = Queue(clean_db, clock=clock, max_payload_bytes=100)

    @q.job("ping")
    def ping(payload: dict[str, Any]) -> None:
        pass

    try:
        with pytest.raises(error):
            call(q, ping)
        assert q.declared_schedules == {}
    finally:
        q.close()
    assert db.execute("SELECT count(*) FROM finejobs_schedules").fetchone() == (0,)


def test_update_refuses_what_add_refuses(queue: Queue, ping: Any) -> None:
    queue.schedules.add("s", ping, Every(hours=1), max_attempts=5)
    with pytest.raises(InvalidJobOptions, match="max_attempts"):
        queue.schedules.update("s", max_attempts=0)
    with pytest.raises(InvalidJobOptions, match="expires_in"):
        queue.schedules.update("s", expires_in=timedelta(days=40_000))
    assert queue.schedules.get("s").max_attempts == 5


def test_a_schedules_payload_reaches_its_jobs_exactly(queue: Queue, clock: FakeClock, db: DB, ping: Any) -> None:
    payload = {"big": 1e20, "small": 1e-7, "n": 10**20, "text": "é"}
    queue.schedules.add("s", ping, Every(hours=1), payload=payload)
    queue.schedule("declared", ping, Every(hours=1), payload=payload)
    queue.schedules.sync()
    queue.schedules.add("updated", ping, Every(hours=1))
    queue.schedules.update("updated", payload=payload)
    assert scheduler(queue).run_once(clock()) == 3
    for job in queue.jobs(kind="ping"):
        assert job.payload == payload and isinstance(job.payload["big"], float), job.payload
    assert queue.schedules.get("s").payload == payload
