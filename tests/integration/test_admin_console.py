"""What the console adds to the operations API: activity per minute (throughput and lag), the kinds, enqueue
by an operator, and schedule operations written to the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

import finejobs
from finejobs import Every, FinejobsError, PayloadError, UnknownKindError
from finejobs.admin import ACTIVITY_MINUTES, Activity, Admin
from finejobs.testing import FakeClock
from tests.conftest import T0

MINUTE = timedelta(minutes=1)


class Alert(BaseModel):
    patient_id: int
    district: int


@pytest.fixture
def admin(queue: finejobs.Queue) -> Admin:
    @queue.job("dosage.alert", shard_by="district", expires_in=timedelta(hours=1))
    def alert(payload: Alert) -> None: ...

    @queue.job("report.build", shard="reports", timeout=timedelta(seconds=30))
    def report(payload: dict[str, Any]) -> None: ...

    return Admin(queue, actor="tester")


def finished(db: psycopg.Connection[Any], state: str, started: Any, due: Any, n: int = 1) -> None:
    db.execute("INSERT INTO finejobs_jobs (kind, state, run_at, started_at, finished_at, attempt) "
               "SELECT 'x', %s, %s, %s, %s, 1 FROM generate_series(1, %s)",
               (state, due, started, started + timedelta(seconds=1), n))


def test_activity_counts_each_minute_and_its_longest_wait(admin: Admin, db: psycopg.Connection[Any],
                                                         clock: FakeClock) -> None:
    clock.set(T0 + timedelta(minutes=30, seconds=20))  # the window: 07:31 .. 08:31 (the current minute last)
    finished(db, "succeeded", T0, T0 - timedelta(seconds=5), n=3)  # 08:00:01: minute 29, waited 5 s
    finished(db, "succeeded", T0 + timedelta(seconds=10), T0 + timedelta(seconds=8))  # same minute, 2 s
    finished(db, "failed", T0 + timedelta(minutes=30), T0 + timedelta(minutes=29))  # minute 59, 60 s
    finished(db, "succeeded", T0 - timedelta(hours=2), T0 - timedelta(hours=2))  # before the window
    finished(db, "cancelled", T0, T0)  # not counted: throughput is succeeded and failed
    activity = admin.activity()
    assert isinstance(activity, Activity)
    assert activity.since == T0 - timedelta(minutes=29) and len(activity.succeeded) == 60
    assert activity.succeeded[29] == 4 and sum(activity.succeeded) == 4
    assert activity.failed[59] == 1 and sum(activity.failed) == 1
    assert activity.lag_seconds[29] == 5.0 and activity.lag_seconds[59] == 60.0
    assert [i for i, v in enumerate(activity.lag_seconds) if v is not None] == [29, 59]
    assert not activity.capped
    assert activity.to_json()["succeeded"][29] == 4
    # reused for a few seconds, unless fresh
    finished(db, "succeeded", T0 + timedelta(minutes=30), T0 + timedelta(minutes=30))
    assert admin.activity().succeeded[59] == 0
    assert admin.activity(fresh=True).succeeded[59] == 1
    assert len(admin.activity(minutes=5).succeeded) == 5


@pytest.mark.parametrize("minutes", [0, -1, ACTIVITY_MINUTES + 1, 1.5, "60", True])
def test_activity_refuses_a_bad_window(admin: Admin, minutes: Any) -> None:
    with pytest.raises(FinejobsError, match="minutes"):
        admin.activity(minutes=minutes)


def test_kinds_describe_the_declared_kinds(admin: Admin) -> None:
    kinds = {k.name: k for k in admin.kinds()}
    assert list(kinds) == ["dosage.alert", "report.build"]
    alert, report = kinds["dosage.alert"], kinds["report.build"]
    assert alert.shard is None and alert.routing is not None and alert.expires_in_seconds == 3600
    assert alert.payload_schema["properties"]["patient_id"]["type"] == "integer"
    assert report.shard == "reports" and report.routing is None and report.timeout_seconds == 30
    assert report.to_json()["max_attempts"] == 3


def test_enqueue_validates_writes_and_audits(admin: Admin, db: psycopg.Connection[Any]) -> None:
    job = admin.enqueue("dosage.alert", {"patient_id": 7, "district": 3})
    assert job.shard == "district-3" and job.payload == {"patient_id": 7, "district": 3}
    entry = admin.audit()[0]
    assert (entry.actor, entry.action, entry.target, entry.count) == (
        "tester", "enqueue", {"job": job.id, "kind": "dosage.alert", "shard": "district-3"}, 1)
    with pytest.raises(PayloadError) as bad:
        admin.enqueue("dosage.alert", {"patient_id": "seven", "district": 3})
    assert bad.value.fields == ["patient_id"]
    with pytest.raises(UnknownKindError):
        admin.enqueue("no.such.kind", {})
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (1,)
    assert len(admin.audit()) == 1  # refusals write nothing, to the audit log neither


def test_schedule_operations_are_audited(admin: Admin, clock: FakeClock) -> None:
    schedules = admin.schedules
    added = schedules.add("renewals", "report.build", Every(timedelta(hours=1)))
    schedules.update("renewals", description="weekly renewals")
    schedules.pause("renewals")
    schedules.resume("renewals")
    schedules.skip_next("renewals")
    job_id = schedules.run_now("renewals")
    schedules.pause_all()
    schedules.resume_all()
    with pytest.raises(FinejobsError):
        schedules.add("renewals", "report.build", Every(timedelta(hours=1)))  # taken: refused, not audited
    schedules.delete("renewals")
    entries = [(e.action, e.target, e.count) for e in reversed(admin.audit())]
    assert entries == [
        ("schedule add", {"schedule": "renewals"}, 1),
        ("schedule update", {"schedule": "renewals"}, 1),
        ("schedule pause", {"schedule": "renewals"}, 1),
        ("schedule resume", {"schedule": "renewals"}, 1),
        ("schedule skip next", {"schedule": "renewals"}, 1),
        ("schedule run now", {"schedule": "renewals", "job": job_id}, 1),
        ("schedule pause all", {"kind": None}, 1),
        ("schedule resume", {"schedule": "renewals"}, 1),
        ("schedule resume all", {"kind": None}, 1),
        ("schedule delete", {"schedule": "renewals"}, 1),
    ]
    assert admin.audit()[-1].detail == added.rule_text and added.rule_text  # the rule in words
    assert {e.actor for e in admin.audit()} == {"tester"}
