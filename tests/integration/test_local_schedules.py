"""Local schedules (queue.local_schedule): run in the worker's process on each tick of their rule, no job row,
never overlapping themselves, errors logged and survived; the registry row lists them.

Driven with the FakeClock: ``worker.local.run_once(now)`` is one look of the service; ``wait_idle()`` waits for
the calls it started (each runs on a thread of its own)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pydantic
import pytest

import finejobs
from finejobs import Adaptive, DailyAt, Every, Idle, InvalidJobOptions, JobContext, Queue
from finejobs.admin import Admin
from finejobs.runtime import Worker, WorkerGroup
from finejobs.runtime.local_schedules import LocalSchedules
from finejobs.testing import FakeClock

SECOND = timedelta(seconds=1)


class Expiry(pydantic.BaseModel):
    cache: str
    older_than: int = 60


def local_of(worker: Worker) -> LocalSchedules:
    assert worker.local is not None
    return worker.local


def test_a_local_schedule_calls_the_handler_in_process_on_each_tick_and_makes_no_job(
        queue: Queue, clock: FakeClock) -> None:
    calls: list[tuple[Expiry, str]] = []

    @queue.job("cache.expire")
    def expire(payload: Expiry) -> None:
        calls.append((payload, threading.current_thread().name))

    spec = queue.local_schedule("cache-expiry", expire, Every(seconds=30), payload={"cache": "tokens"})
    assert spec.kind == "cache.expire" and spec.payload == {"cache": "tokens", "older_than": 60}
    worker = Worker(queue, register=False, listen=False)
    local = local_of(worker)
    assert local.run_once(clock()) == 1  # T0 is on the 30 s grid: due at once
    assert local.wait_idle(5)
    assert calls[0][0] == Expiry(cache="tokens") and calls[0][1].startswith("finejobs-local-cache-expiry")
    for seconds, expected in ((10, 1), (19, 1), (1, 2), (29, 2), (1, 3)):  # 10 s, 29 s, 30 s, 59 s, 60 s
        clock.advance(seconds)
        local.run_once(clock())
        local.wait_idle(5)
        assert len(calls) == expected, f"after {seconds}s"
    clock.advance(95)  # three ticks passed: one call (coalesced), next on the grid after now
    local.run_once(clock())
    local.wait_idle(5)
    assert len(calls) == 4
    [entry] = local.snapshot()
    assert entry["next_run_at"] == (clock() + timedelta(seconds=25)).isoformat()
    assert entry["runs"] == 4 and entry["last_outcome"] == "success" and entry["calls"] == "cache.expire"
    queue.migrate()
    assert queue.jobs() == [] and queue.schedules.list() == []  # no row anywhere


def test_a_call_still_running_makes_the_next_tick_skipped_never_overlapping(
        queue: Queue, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()

    def slow() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(5)
        with lock:
            running -= 1

    queue.local_schedule("slow", slow, Every(seconds=10))
    queue.job("noop")(lambda payload: None)
    local = local_of(Worker(queue, register=False, listen=False))
    caplog.set_level(logging.INFO, logger="finejobs.local")
    assert local.run_once(clock()) == 1
    for _ in range(3):
        clock.advance(10)
        assert local.run_once(clock()) == 0  # still running: skipped
    [entry] = local.snapshot()
    assert entry["running"] and entry["skipped"] == 3 and entry["runs"] == 1
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and "its previous run" in skipped[0] and "'slow'" in skipped[0]
    release.set()
    assert local.wait_idle(5)
    clock.advance(10)
    assert local.run_once(clock()) == 1
    assert local.wait_idle(5)
    assert most == 1


def test_an_error_is_logged_and_the_schedule_goes_on(queue: Queue, clock: FakeClock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    outcomes = iter([RuntimeError("cache server down"), SystemExit(3), None])

    def flaky() -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    queue.local_schedule("flaky", flaky, Every(minutes=1))
    queue.job("noop")(lambda payload: None)
    local = local_of(Worker(queue, register=False, listen=False))
    caplog.set_level(logging.INFO, logger="finejobs.local")
    for expected in ("error", "error", "success"):
        local.run_once(clock())
        assert local.wait_idle(5)
        assert local.snapshot()[0]["last_outcome"] == expected
        clock.advance(60)
    [entry] = local.snapshot()
    assert entry["errors"] == 2 and entry["runs"] == 3 and entry["last_error"] is None
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "cache server down" in failures[0].getMessage() and failures[0].exc_info is not None
    assert "SystemExit" in failures[1].getMessage()


def test_an_adaptive_rule_waits_the_delay_of_each_outcome_from_the_end_of_the_call(
        queue: Queue, clock: FakeClock) -> None:
    results: list[Any] = [None, Idle, ValueError("no"), None]

    def poll() -> Any:
        result = results.pop(0)
        clock.advance(2)  # the call takes 2 s
        if isinstance(result, Exception):
            raise result
        return result

    queue.local_schedule("poll", poll, Adaptive(on_success=10 * SECOND, on_idle=30 * SECOND, on_error=60 * SECOND))
    queue.job("noop")(lambda payload: None)
    local = local_of(Worker(queue, register=False, listen=False))
    for outcome, delay in (("success", 10), ("idle", 30), ("error", 60)):
        started = clock()
        assert local.run_once(started) == 1
        assert local.wait_idle(5)
        entry = local.snapshot()[0]
        assert entry["last_outcome"] == outcome
        assert entry["next_run_at"] == (started + timedelta(seconds=2 + delay)).isoformat()
        clock.advance(delay - 1)  # a second early: not due
        assert local.run_once(clock()) == 0
        clock.advance(1)


def test_an_async_handler_and_a_daily_rule(queue: Queue, clock: FakeClock) -> None:
    seen: list[str] = []

    @queue.job("report")
    async def report(payload: dict[str, Any]) -> None:
        seen.append(payload["to"])

    queue.local_schedule("nightly", "report", DailyAt("09:30", tz="Europe/Madrid"), payload={"to": "ops"})
    local = local_of(Worker(queue, register=False, listen=False))
    local.run_once(clock())  # T0 = 08:00 UTC = 09:00 in Madrid: not yet
    clock.advance(timedelta(minutes=30))
    local.run_once(clock())
    assert local.wait_idle(5) and seen == ["ops"]
    assert local.snapshot()[0]["next_run_at"] == (clock() + timedelta(days=1)).isoformat()


def test_declaring_a_local_schedule_refuses_what_it_cannot_do(queue: Queue) -> None:
    @queue.job("with.context")
    def with_context(payload: dict[str, Any], ctx: JobContext) -> None:
        pass

    @queue.job("typed")
    def typed(payload: Expiry) -> None:
        pass

    refusals: list[tuple[Any, str]] = [
        (lambda: queue.local_schedule("a", "nope", Every(seconds=1)), "unknown job kind 'nope'"),
        (lambda: queue.local_schedule("a", with_context, Every(seconds=1)), "takes a job context"),
        (lambda: queue.local_schedule("a", lambda: None, Every(seconds=1), payload={"x": 1}), "no payload"),
        (lambda: queue.local_schedule("a", lambda x: None, Every(seconds=1)),  # type: ignore[arg-type,misc]
         "without arguments"),
        (lambda: queue.local_schedule("a", typed, Every(seconds=1), payload={"older_than": 3}), "cache"),
        (lambda: queue.local_schedule("a", 42, Every(seconds=1)), "expected a job kind"),  # type: ignore[arg-type]
        (lambda: queue.local_schedule(" ", print, Every(seconds=1)), "must not be blank"),
        (lambda: queue.schedule("a", typed, Every(seconds=1), local=True), "queue.local_schedule"),
    ]
    for declare, message in refusals:
        with pytest.raises(finejobs.FinejobsError, match=message):
            declare()
    assert queue.local_schedules == {}
    queue.local_schedule("a", print, Every(seconds=1))
    with pytest.raises(InvalidJobOptions, match="already declared"):
        queue.schedule("a", typed, Every(seconds=1))
    with pytest.raises(InvalidJobOptions, match="already declared"):
        queue.local_schedule("a", print, Every(seconds=1))


def test_a_running_worker_runs_them_and_its_registry_row_lists_them(queue: Queue, clock: FakeClock) -> None:
    queue.migrate()
    calls: list[int] = []
    queue.local_schedule("tick", lambda: calls.append(1), Every(seconds=5), description="every five")
    queue.job("noop")(lambda payload: None)
    worker = Worker(queue, listen=False, poll_interval=0.05, maintenance_interval=0.2).start()
    try:
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls, "the local schedule did not run"
        clock.advance(5)
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls) == 2
        time.sleep(0.3)
        assert len(calls) == 2  # the fake clock stands still: no more ticks
        assert worker.registry is not None
        worker.registry.run_once(clock())
        [info] = Admin(queue).workers()
        [entry] = info.info["local_schedules"]
        assert entry["name"] == "tick" and entry["rule"] == "every 5 seconds" and entry["runs"] == 2
        assert entry["next_run_at"] == (clock() + timedelta(seconds=5)).isoformat()
    finally:
        worker.stop()
    assert worker.error is None


def test_a_worker_of_local_schedules_only_runs_them_and_claims_nothing(queue: Queue, clean_db: str,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    queue.migrate()
    with pytest.raises(finejobs.FinejobsError, match="no job kinds and no local schedules"):
        Worker(queue, listen=False).run(install_signal_handlers=False)
    calls: list[int] = []
    queue.local_schedule("tick", lambda: calls.append(1), Every(seconds=5))
    with pytest.raises(finejobs.FinejobsError, match="no job kinds and no local schedules"):
        Worker(queue, listen=False, local_schedules=False).run(install_signal_handlers=False)
    other = Queue(clean_db, clock=queue.clock)  # a second app enqueues a job this worker has no kind for
    other.job("elsewhere")(lambda payload: None)
    job = other.enqueue("elsewhere", {})
    caplog.set_level(logging.INFO, logger="finejobs.worker")
    worker = Worker(queue, listen=False, poll_interval=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls, "the local schedule did not run"
    finally:
        worker.stop()
    assert worker.error is None and worker.stats["claimed"] == 0
    assert any("kinds=(none: local schedules only)" in r.getMessage() for r in caplog.records)
    assert queue.get(job.id).state.value == "available"
    other.close()


def test_opting_out_and_a_worker_group_runs_them_once_per_process(queue: Queue) -> None:
    queue.local_schedule("tick", print, Every(seconds=5))
    queue.job("noop")(lambda payload: None)
    assert Worker(queue, local_schedules=False).local is None
    group = WorkerGroup(queue, databases=["default", "default"], register=False)
    assert [w.local is not None for w in group.workers] == [True, False]
    group = WorkerGroup(queue, databases=["default", "default"], local_schedules=False)
    assert [w.local for w in group.workers] == [None, None]
