"""HTTP services on a real PostgreSQL and a real HTTP server on 127.0.0.1: each reply mapped to its outcome,
the interval after each outcome, daily plans across a DST change, the one-call-at-a-time lock, files
refused as a whole, secrets never shown."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import finejobs
from finejobs import Queue
from finejobs.http_runner import KIND
from finejobs.runtime.worker import Worker
from finejobs.services import ServiceFileError, declare_services, http_service, load_services, parse_services
from finejobs.testing import FakeClock
from tests.service_stub import Stub, closed_port, serve

MINUTE = timedelta(minutes=1)
DB = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    with serve() as server:
        yield server


def interval_plan(minutes: int) -> dict[str, Any]:
    """Intervals that tell the outcomes apart: success m, idle 10m, error 100m, timeout 1000m (+ m each)."""
    return {"period": "interval", "intervals": {"on_success": minutes * 60, "on_idle": f"{10 + minutes}m",
                                                 "on_error": (100 + minutes) * 60, "on_timeout": (1000 + minutes) * 60}}


def worker_of(queue: Queue) -> Worker:
    worker = queue.worker(listen=False)
    assert isinstance(worker, Worker) and worker.scheduler is not None
    worker.scheduler.declare()
    return worker


def one_round(queue: Queue, worker: Worker) -> None:
    """Fire what is due, run it, re-arm the adaptive schedules (all at the FakeClock's now)."""
    assert worker.scheduler is not None
    worker.scheduler.run_once(queue.clock())
    while worker.work_once():
        pass
    worker.scheduler.run_once(queue.clock())


# (path, outcome, job state, job result, words in the recorded error, the interval in minutes that follows)
CASES = [
    ("/success", "success", "succeeded", None, None, 1),
    ("/idle", "idle", "succeeded", "idle", None, 10),
    ("/error", "error", "failed", None, "gateway down | error_details: [\"device 7: no answer\"", 100),
    ("/slow", "timeout", "failed", "timeout", "within the timeout of 0.4s", 1000),
    ("/html", "error", "failed", None, "content type 'text/html', not application/json", 100),
    ("/notjson", "error", "failed", None, "a body that is not JSON", 100),
    ("/wrongtype", "error", "failed", None, "content type 'text/plain'", 100),
    ("/nocode", "error", "failed", None, "without a 'code' (expected one of success, idle, error)", 100),
    ("/unknown", "error", "failed", None, "an unknown code 'maybe'", 100),
    ("/http500", "error", "failed", None, "HTTP 500 Internal Server Error", 100),
    ("refused", "error", "failed", None, "cannot connect to http://127.0.0.1:", 100),
]


def test_each_reply_is_mapped_to_its_outcome_and_interval(queue: Queue, clock: FakeClock, stub: Stub,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/run"
    for i, (path, *_) in enumerate(CASES):
        endpoint = refused if path == "refused" else stub.url + path
        http_service(queue, f"svc{i}", endpoint=endpoint, parameters={"case": path, "n": i}, timeout=0.4,
                     plan=interval_plan(i + 1))
    worker = worker_of(queue)
    caplog.set_level(logging.INFO, logger="finejobs.services")
    one_round(queue, worker)
    for i, (path, outcome, state, result, words, minutes) in enumerate(CASES):
        schedule = queue.schedules.get(f"service:svc{i}")
        assert schedule.kind == KIND and schedule.overlap == "skip" and schedule.max_attempts == 1
        assert schedule.last_outcome == outcome, path
        (run,) = queue.schedules.runs(f"service:svc{i}")
        job = queue.get(run.job_id)
        assert (job.state.value, job.result, job.attempt) == (state, result, 1), path
        if words is None:
            assert not job.errors, path
        else:
            assert words in job.errors[-1].message, (path, job.errors[-1].message)
        expected = ({"success": 0, "idle": 10, "error": 100, "timeout": 1000}[outcome] + i + 1) * MINUTE
        assert minutes == {"success": 1, "idle": 10, "error": 100, "timeout": 1000}[outcome], path
        assert schedule.next_fire_at == clock() + expected, path
    success = queue.get(queue.schedules.runs("service:svc0")[0].job_id)
    assert success.return_value == {"code": "success", "message": "synced 3 devices"}
    idle = queue.get(queue.schedules.runs("service:svc1")[0].job_id)  # idle, and its message kept too
    assert (idle.result, idle.return_value) == ("idle", {"code": "idle", "message": "nothing to do"})
    last = stub.of("/success")[-1]
    assert last.body == {"case": "/success", "n": 0}  # the parameters, as JSON
    assert (last.headers["X-Finejobs-Job-Id"], last.headers["X-Finejobs-Attempt"]) == (str(success.id), "1")
    lines = [r.getMessage() for r in caplog.records if r.name == "finejobs.services"]
    assert len(lines) == len(CASES)  # one line per run
    assert any(line.startswith("service=svc2 code=error message=gateway down error_details=[\"device 7")
               and "duration=" in line for line in lines), lines
    assert any("service=svc3 code=timeout" in line for line in lines), lines


def test_the_next_run_waits_the_interval_after_the_run_ends(queue: Queue, clock: FakeClock, stub: Stub) -> None:
    http_service(queue, "poll", endpoint=stub.url + "/idle", timeout=2, plan=interval_plan(1))
    worker = worker_of(queue)
    one_round(queue, worker)
    first = queue.schedules.get("service:poll").next_fire_at
    assert first == clock() + 11 * MINUTE
    clock.advance(10 * MINUTE)
    one_round(queue, worker)  # not due yet: nothing runs
    assert len(queue.schedules.runs("service:poll")) == 1
    clock.set(first)
    one_round(queue, worker)
    assert [r.outcome for r in queue.schedules.runs("service:poll")] == ["idle", "idle"]


def test_daily_plans_follow_the_time_zone_across_dst(queue: Queue, clock: FakeClock, stub: Stub) -> None:
    clock.set(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))  # Europe/Madrid goes to summer time on 29 March
    http_service(queue, "report", endpoint=stub.url + "/success", timeout=2,
                 plan={"period": "daily", "time": "09:00", "timezone": "Europe/Madrid"}, allow_concurrency=True)
    worker = worker_of(queue)
    fires = []
    for _ in range(3):
        upcoming = queue.schedules.get("service:report").next_fire_at
        assert upcoming is not None
        fires.append(upcoming)
        clock.set(upcoming)
        one_round(queue, worker)
    assert fires == [datetime(2026, 3, 28, 8, 0, tzinfo=UTC),  # 09:00 CET
                     datetime(2026, 3, 29, 7, 0, tzinfo=UTC),  # 09:00 CEST
                     datetime(2026, 3, 30, 7, 0, tzinfo=UTC)]
    assert [r.outcome for r in queue.schedules.runs("service:report")] == ["success"] * 3
    assert queue.schedules.get("service:report").overlap == "allow"


@pytest.mark.parametrize("allow", [False, True])
def test_no_second_call_while_one_is_unfinished_unless_allowed(queue: Queue, clock: FakeClock, stub: Stub,
                                                               db: DB, allow: bool) -> None:
    clock.set(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    http_service(queue, "daily", endpoint=stub.url + "/success", timeout=2, allow_concurrency=allow,
                 plan={"period": "daily", "time": "06:00:30", "timezone": "Europe/Madrid"})
    worker = worker_of(queue)
    assert worker.scheduler is not None
    for _ in range(2):  # two ticks, the first call never finishing (a worker still calling it)
        upcoming = queue.schedules.get("service:daily").next_fire_at
        assert upcoming is not None
        clock.set(upcoming)
        worker.scheduler.run_once(clock())
        # a worker is still calling it (claimed, no reply yet)
        db.execute("UPDATE finejobs_jobs SET state = 'running', started_at = now(), attempt = 1, "
                   "lease_owner = 'elsewhere', lease_expires_at = now() + interval '1 hour'")
    schedule = queue.schedules.get("service:daily")
    assert (schedule.runs, schedule.skipped) == ((2, 0) if allow else (1, 1))


def test_two_workers_never_call_a_locked_service_at_once(clean_db: str, stub: Stub) -> None:
    queues = [Queue(clean_db) for _ in range(2)]
    for q in queues:
        http_service(q, "locked", endpoint=stub.url + "/locked", timeout=2,
                     plan={"period": "interval", "intervals": {"on_success": 0}})
    workers = [q.worker(concurrency=4, poll_interval=0.02, schedule_interval=0.02, listen=False,
                        maintenance_interval=0.5) for q in queues]
    before = len(stub.of("/locked"))
    try:
        for w in workers:
            assert isinstance(w, Worker)
            w.start()
        deadline = time.monotonic() + 10
        while len(stub.of("/locked")) - before < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for w in workers:
            assert isinstance(w, Worker)
            w.stop()
        for q in queues:
            q.close()
    calls = sorted(stub.of("/locked")[before:], key=lambda c: c.start)
    assert len(calls) >= 6
    for earlier, later in itertools.pairwise(calls):
        assert later.start >= earlier.end - 0.01, "two calls of the service overlapped"


def test_a_bad_file_is_refused_as_a_whole_and_nothing_is_scheduled(queue: Queue, tmp_path: Path) -> None:
    good = {"name": "ok", "endpoint": "http://127.0.0.1:9/x", "timeout": 5,
            "execution_plan": {"period": "daily", "time": "06:00", "timezone": "Europe/Madrid"}}
    bad = [good, {"name": "ok", "endpoint": "http://a/", "execution_plan": {"period": "daily", "time": "6"}},
           {"name": "x", "endpoint": "mailto:me", "timeout": 0, "allow_concurrency": 1, "colour": "red",
            "execution_plan": {"period": "interval", "timezone": "Nowhere/City",
                               "intervals": {"on_success": "soon", "on_never": 1}}}]
    path = tmp_path / "services.json"
    path.write_text(json.dumps(bad, indent=2))
    with pytest.raises(ServiceFileError) as refused:
        declare_services(queue, load_services(path))
    problems = refused.value.problems
    assert problems == [
        "[1].execution_plan.time: '6' is not a time of day hh:mm or hh:mm:ss (00:00 to 23:59:59)",
        "[2].endpoint: must be an http:// or https:// URL with a host, got 'mailto:me'",
        "[2].timeout: must be over 0 and at most 86400 seconds (a day)",
        "[2].allow_concurrency: Input should be a valid boolean",
        "[2].execution_plan.timezone: unknown timezone 'Nowhere/City' (an IANA name such as Europe/Madrid)",
        "[2].execution_plan.intervals.on_success: 'soon' is not a duration (seconds, or e.g. 90s, 5m, 1h30m, 2d)",
        "[2].execution_plan.intervals.on_never: unknown field",
        "[2].colour: unknown field",
    ], problems
    assert str(path) in str(refused.value) and "nothing scheduled" in str(refused.value)
    with pytest.raises(ServiceFileError, match=r"\[1\]\.name: 'ok' is already the name of \[0\]"):
        parse_services([good, good])
    path.write_text('[\n  {"name": "a",\n   "timeout": 5,,\n  }\n]\n')
    with pytest.raises(ServiceFileError, match="JSON syntax error at line 3 column 17"):
        load_services(path)
    toml = tmp_path / "services.toml"
    toml.write_text('[[services]]\nname = "a"\nendpoint = "http://a/"\ntimeout = [\n')
    with pytest.raises(ServiceFileError, match=r"TOML syntax error at line 5 \(the end of the file\)"):
        load_services(toml)
    toml.write_text('[[services]]\nname = "a"\nendpoint = = "http://a/"\n')
    with pytest.raises(ServiceFileError, match=r"TOML syntax error at line 3 column 12: Invalid value"):
        load_services(toml)
    toml.write_text('[[services]]\nname = "a"\nendpoint = "http://a/"\n[services.execution_plan]\nperiod = "daily"\n')
    with pytest.raises(ServiceFileError, match=r"services\[0\]\.execution_plan\.time: required for a daily plan"):
        load_services(toml)
    with pytest.raises(ServiceFileError, match=r"plan\.intervals\.on_error: must be zero or more seconds"):
        http_service(queue, "py", endpoint="http://a/", plan={"period": "interval",
                                                            "intervals": {"on_success": 1, "on_error": -1}})
    assert queue.declared_schedules == {} and KIND not in queue.kinds
    worker_of(queue)
    assert queue.schedules.list() == []


def test_toml_and_json_files_declare_the_same_schedules(clean_db: str, tmp_path: Path) -> None:
    services = [{"name": "sync", "description": "devices", "endpoint": "https://api.example/sync",
                 "parameters": {"batch": 50, "deep": {"a": [1, 2]}}, "timeout": 30, "allow_concurrency": False,
                 "execution_plan": {"period": "interval", "timezone": "Europe/Madrid", "time": "00:00",
                                    "intervals": {"on_success": 60, "on_idle": 600, "on_error": 120,
                                                  "on_timeout": 300}}},
                {"name": "report", "endpoint": "https://api.example/report", "timeout": 10,
                 "allow_concurrency": True,
                 "execution_plan": {"period": "daily", "timezone": "Europe/Madrid", "time": "09:30:15"}}]
    (tmp_path / "s.json").write_text(json.dumps(services))
    (tmp_path / "s.toml").write_text('''
[[services]]
name = "sync"
description = "devices"
endpoint = "https://api.example/sync"
parameters = { batch = 50, deep = { a = [1, 2] } }
timeout = 30
allow_concurrency = false
[services.execution_plan]
period = "interval"
timezone = "Europe/Madrid"
time = "00:00"
intervals = { on_success = 60, on_idle = "10m", on_error = "2m", on_timeout = 300 }

[[services]]
name = "report"
endpoint = "https://api.example/report"
timeout = 10
allow_concurrency = true
execution_plan = { period = "daily", timezone = "Europe/Madrid", time = "09:30:15" }
''')
    declared = []
    for name in ("s.json", "s.toml"):
        q = Queue(clean_db)
        declared.append({n: (s.rule.to_spec(), s.payload, s.overlap, s.description)
                         for n, s in ((s.name, s) for s in declare_services(q, load_services(tmp_path / name)))})
        q.close()
    assert declared[0] == declared[1]
    assert set(declared[0]) == {"service:sync", "service:report"}


def test_secrets_in_endpoints_are_never_shown(queue: Queue, caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    http_service(queue, "secret", endpoint=f"http://bob:hunter2@127.0.0.1:{port}/run?token=s3cr3t&x=1", timeout=1,
                 plan={"period": "interval", "intervals": {"on_success": 60}})
    caplog.set_level(logging.INFO)
    one_round(queue, worker_of(queue))
    (run,) = queue.schedules.runs("service:secret")
    error = queue.get(run.job_id).errors[-1]
    assert f"http://bob:***@127.0.0.1:{port}/run?token=***&x=***" in error.message
    shown = error.message + (error.traceback or "") + caplog.text + str(run.error)
    assert "hunter2" not in shown and "s3cr3t" not in shown
    assert finejobs.http_runner.mask_endpoint("https://tok@h/p") == "https://***@h/p"
