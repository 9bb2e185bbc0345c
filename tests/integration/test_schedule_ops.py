"""Schedule operations from Python: list (search, sort), show, add, update, delete, pause, resume,
pause-all, resume-all, run-now, skip-next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import finejobs
from finejobs import Cron, Every, FinejobsError, Queue, RRule, ScheduleNotFound
from finejobs.testing import FakeClock

DB = psycopg.Connection[tuple[Any, ...]]
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # a Sunday
MINUTE = timedelta(minutes=1)


@pytest.fixture
def renew(queue: Queue) -> finejobs.JobKind[Any, Any]:
    @queue.job("renew")
    def renew(payload: dict[str, Any]) -> None:
        pass

    return renew


def fire(queue: Queue, now: datetime) -> int:
    worker = queue.worker(listen=False)
    assert worker.scheduler is not None
    return worker.scheduler.run_once(now)


def test_add_show_and_list(queue: Queue, clock: FakeClock, renew: Any) -> None:
    added = queue.schedules.add("policy-renewals", renew, Cron("0 6 * * MON", tz="Africa/Dar_es_Salaam"),
                                payload={"region": "north"}, description="weekly policy renewal")
    assert added.next_fire_at == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 06:00 EAT (+03:00)
    assert added.rule_text == "At 06:00 on Monday (Africa/Dar_es_Salaam)"
    assert (added.status, added.runs, added.runs_left, added.source) == ("active", 0, None, "runtime")
    assert added.timezone == "Africa/Dar_es_Salaam"
    assert [f.isoformat() for f in added.next_fires(3)] == [
        "2026-11-23T03:00:00+00:00", "2026-11-30T03:00:00+00:00", "2026-12-07T03:00:00+00:00"]
    queue.schedules.add("cleanup", "renew", Every(hours=1), description="hourly tidy-up")
    assert [s.name for s in queue.schedules.list()] == ["cleanup", "policy-renewals"]
    assert [s.name for s in queue.schedules.list(sort="next")] == ["cleanup", "policy-renewals"]
    assert [s.name for s in queue.schedules.list(sort="name", descending=True)] == ["policy-renewals", "cleanup"]
    assert [s.name for s in queue.schedules.list(search="WEEKLY")] == ["policy-renewals"]
    assert [s.name for s in queue.schedules.list(search="100%")] == []
    with pytest.raises(ValueError, match="sort"):
        queue.schedules.list(sort="colour")
    with pytest.raises(FinejobsError, match="already exists"):
        queue.schedules.add("cleanup", renew, Every(hours=2))
    with pytest.raises(ScheduleNotFound):
        queue.schedules.get("nope")


def test_show_recent_runs_with_status_duration_and_error(queue: Queue, clock: FakeClock, db: DB) -> None:
    calls = iter([None, RuntimeError("insurer API down")])

    @queue.job("flaky", retry=finejobs.Retry(max_attempts=1))
    def flaky(payload: dict[str, Any]) -> None:
        outcome = next(calls)
        clock.advance(timedelta(seconds=2))
        if outcome is not None:
            raise outcome

    queue.schedules.add("s", flaky, Every(minutes=1))
    worker = queue.worker(listen=False)
    for _ in range(2):
        assert worker.scheduler is not None
        worker.scheduler.run_once(clock())
        worker.work_once()
        clock.set(queue.schedules.get("s").next_fire_at or clock())
    runs = queue.schedules.runs("s")
    assert [(r.state, r.outcome) for r in runs] == [("failed", "error"), ("succeeded", "success")]
    assert runs[0].error == "RuntimeError: insurer API down"
    assert runs[1].duration == timedelta(seconds=2) and runs[1].error is None
    shown = queue.schedules.get("s")
    assert (shown.status, shown.last_state, shown.last_outcome, shown.runs) == ("failed", "failed", "error", 2)


def test_update_changes_options_and_recomputes_the_next_fire(queue: Queue, clock: FakeClock, renew: Any) -> None:
    queue.schedules.add("s", renew, Every(hours=1, start=T0 + 30 * MINUTE))
    assert queue.schedules.get("s").next_fire_at == T0 + 30 * MINUTE
    updated = queue.schedules.update("s", description="now daily", payload={"x": 1}, priority=5)
    assert (updated.description, updated.payload, updated.priority) == ("now daily", {"x": 1}, 5)
    assert updated.next_fire_at == T0 + 30 * MINUTE  # same rule: same next fire
    retimed = queue.schedules.update("s", rule=RRule.daily(at="09:15"))
    assert retimed.next_fire_at == T0 + timedelta(hours=1, minutes=15)
    assert retimed.rule_text.startswith("every day at 09:15")
    with pytest.raises(TypeError):
        queue.schedules.update("s", paused=True)
    with pytest.raises(ValueError):
        queue.schedules.update("s", misfire="sometimes")


def test_delete_keeps_the_jobs_already_made(queue: Queue, clock: FakeClock, renew: Any) -> None:
    queue.schedules.add("s", renew, Every(minutes=1))
    assert fire(queue, clock()) == 1
    queue.schedules.delete("s")
    with pytest.raises(ScheduleNotFound):
        queue.schedules.delete("s")
    assert len(queue.jobs(kind="renew")) == 1


def test_pause_and_resume_do_not_run_the_paused_ticks(queue: Queue, clock: FakeClock, renew: Any) -> None:
    queue.schedules.add("s", renew, Every(minutes=1))
    fire(queue, clock())
    assert queue.schedules.pause("s").status == "paused"
    clock.advance(10 * MINUTE)
    assert fire(queue, clock()) == 0
    resumed = queue.schedules.resume("s")
    assert resumed.status == "active" and resumed.next_fire_at == clock()
    assert fire(queue, clock()) == 1
    assert queue.schedules.get("s").runs == 2


def test_pause_all_and_resume_all(queue: Queue, clock: FakeClock, renew: Any) -> None:
    queue.schedules.add("a", renew, Every(minutes=1))
    queue.schedules.add("b", renew, Every(minutes=1))
    queue.schedules.add("c", "other.kind", Every(minutes=1))
    assert queue.schedules.pause_all(kind="renew") == ["a", "b"]
    assert queue.schedules.pause_all() == ["c"]
    assert fire(queue, clock()) == 0
    assert queue.schedules.resume_all(kind="other.kind") == ["c"]
    assert queue.schedules.resume_all() == ["a", "b"]
    assert {s.status for s in queue.schedules.list()} == {"active"}


def test_run_now(queue: Queue, clock: FakeClock, renew: Any, db: DB) -> None:
    queue.schedules.add("s", renew, Every(hours=1, start=T0 + 30 * MINUTE), payload={"p": 1})
    job_id = queue.schedules.run_now("s")
    job = queue.get(job_id)
    assert (job.kind, job.payload, job.run_at, job.expires_at) == ("renew", {"p": 1}, T0, None)
    assert queue.schedules.get("s").next_fire_at == T0 + 30 * MINUTE  # the ticks go on as before
    clock.advance(MINUTE)
    with pytest.raises(FinejobsError, match="not finished"):
        queue.schedules.run_now("s")  # overlap=skip: refused while the first one waits
    assert queue.get(queue.schedules.run_now("s", force=True)).run_at == clock()
    assert queue.schedules.get("s").runs == 2


def test_run_now_on_a_paused_schedule(queue: Queue, clock: FakeClock, renew: Any) -> None:
    queue.schedules.add("s", renew, Every(hours=1), paused=True)
    assert queue.get(queue.schedules.run_now("s")).kind == "renew"
    assert queue.schedules.get("s").paused


def test_skip_next(queue: Queue, clock: FakeClock, renew: Any) -> None:
    queue.schedules.add("s", renew, Cron("0 6 * * MON", tz="UTC"))
    skipped = queue.schedules.skip_next("s")
    assert skipped.next_fire_at == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert skipped.skipped == 1
    queue.schedules.add("once", renew, finejobs.Once(T0 + MINUTE))
    assert queue.schedules.skip_next("once").status == "finished"
    with pytest.raises(FinejobsError, match="no next tick"):
        queue.schedules.skip_next("once")


def test_runs_left_for_bounded_rules(queue: Queue, clock: FakeClock, renew: Any) -> None:
    queue.schedules.add("count", renew, Every(seconds=5, start=T0, count=10))
    queue.schedules.add("until", renew, RRule("FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=21;UNTIL=20300121", tz="UTC"))
    queue.schedules.add("end", renew, Every(hours=1), end=T0 + timedelta(hours=5))
    assert queue.schedules.get("count").runs_left == 10
    assert queue.schedules.get("until").runs_left == 4  # 2027, 2028, 2029, 2030
    assert queue.schedules.get("end").runs_left == 6  # 08:00 to 13:00 inclusive
    assert queue.schedules.get("count").to_json()["runs_left"] == 10
