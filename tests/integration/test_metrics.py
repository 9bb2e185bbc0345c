"""Prometheus metrics on a real PostgreSQL: a worker's counters, histogram and gauges served on a real port
and scraped over HTTP; the console's metrics of the queue (finejobs.metrics)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import finejobs
from finejobs import Admin, Cancel, ConfigurationError, Every, JobSpec, Queue, Retry
from finejobs.metrics import MetricsServer, WorkerMetrics, console_app, console_registry, serve
from finejobs.runtime import Worker, WorkerGroup
from finejobs.testing import FakeClock
from tests.conftest import T0

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
NO_JITTER = Retry(max_attempts=3, backoff=10 * SECOND, max_backoff=timedelta(hours=1), jitter=timedelta(0))
DB = psycopg.Connection[tuple[Any, ...]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (sample name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def server() -> Iterator[Callable[[WorkerMetrics], MetricsServer]]:
    started: list[MetricsServer] = []

    def start(metrics: WorkerMetrics) -> MetricsServer:
        started.append(serve(metrics.registry, port=0))  # a free port on 127.0.0.1
        return started[-1]

    yield start
    for s in started:
        s.close()


@pytest.fixture
def kinds(queue: Queue) -> Queue:
    """ok succeeds; boom fails for good; flaky fails its first attempt, then succeeds; quit cancels itself;
    late fails, and its retry would start after it expires."""
    attempts: dict[int, int] = {}

    @queue.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        pass

    @queue.job("boom", retry=Retry(max_attempts=1))
    def boom(payload: dict[str, Any]) -> None:
        raise RuntimeError("gateway down")

    @queue.job("flaky", retry=NO_JITTER)
    def flaky(payload: dict[str, Any], ctx: finejobs.JobContext) -> None:
        attempts[ctx.job.id] = ctx.attempt
        if ctx.attempt == 1:
            raise TimeoutError("slow gateway")

    @queue.job("quit")
    def quit_(payload: dict[str, Any]) -> None:
        raise Cancel("patient opted out")

    @queue.job("late", retry=NO_JITTER, expires_in=5 * SECOND)
    def late(payload: dict[str, Any]) -> None:
        raise RuntimeError("too late")

    return queue


def inline_worker(queue: Queue, metrics: WorkerMetrics, **options: Any) -> Worker:
    worker = queue.worker(observers=[metrics], listen=False, register=False, **options)
    assert isinstance(worker, Worker)
    return worker


# ---------------------------------------------------------------- a worker's own metrics


def test_a_worker_counts_claims_outcomes_and_durations_served_over_http(
        kinds: Queue, clock: FakeClock, server: Callable[[WorkerMetrics], MetricsServer]) -> None:
    queue = kinds
    queue.kind("ok").enqueue_many([{}, {}, {}])
    queue.kind("boom").enqueue_many([{}, {}])
    queue.enqueue("flaky", {})
    queue.enqueue("quit", {})
    queue.enqueue("late", {})
    metrics = WorkerMetrics()
    worker = inline_worker(queue, metrics, run_scheduler=False)
    assert len(worker.work_once()) == 8
    clock.advance(10 * SECOND)  # the flaky job's retry is due
    assert len(worker.work_once()) == 1
    assert worker.work_once() == []

    samples = scrape(server(metrics).url)
    claimed = {dict(k)["kind"]: v for k, v in named(samples, "finejobs_worker_jobs_claimed_total").items()}
    assert claimed == {"ok": 3, "boom": 2, "flaky": 2, "quit": 1, "late": 1}
    outcomes = {(dict(k)["kind"], dict(k)["outcome"]): v
                for k, v in named(samples, "finejobs_worker_job_outcomes_total").items()}
    assert outcomes == {("ok", "succeeded"): 3, ("boom", "failed"): 2, ("flaky", "retried"): 1,
                        ("flaky", "succeeded"): 1, ("quit", "cancelled"): 1, ("late", "expired"): 1}
    counts = {(dict(k)["kind"], dict(k)["outcome"]): v
              for k, v in named(samples, "finejobs_job_duration_seconds_count").items()}
    assert counts == outcomes
    assert value(samples, "finejobs_job_duration_seconds_bucket", kind="ok", outcome="succeeded", le="+Inf") == 3
    assert 0 < (value(samples, "finejobs_job_duration_seconds_sum", kind="ok", outcome="succeeded") or 0) < 5
    assert worker.stats["claimed"] == 9  # the same counts as the worker's own


def test_a_running_worker_shows_its_slots_and_starts_every_series_at_zero(
        queue: Queue, server: Callable[[WorkerMetrics], MetricsServer]) -> None:
    release = threading.Event()

    @queue.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        pass

    @queue.job("hold")
    def hold(payload: dict[str, Any]) -> None:
        release.wait(20)

    metrics = WorkerMetrics()
    url = server(metrics).url
    worker = inline_worker(queue, metrics, concurrency=3, poll_interval=0.05, run_scheduler=False)
    assert named(scrape(url), "finejobs_worker_in_flight") == {}  # nothing started yet
    with worker:
        queue.kind("ok").enqueue_many([{}, {}])
        queue.enqueue("hold", {})
        def two_done() -> bool:  # the observer is told just after the worker counts: wait for the metrics
            found = scrape(url)
            return (value(found, "finejobs_worker_job_outcomes_total", kind="ok", outcome="succeeded") == 2
                    and value(found, "finejobs_worker_in_flight", worker=worker.worker_id) == 1)

        wait_until(two_done, what="two jobs done")
        samples = scrape(url)
        assert value(samples, "finejobs_worker_in_flight", worker=worker.worker_id) == 1
        assert value(samples, "finejobs_worker_concurrency", worker=worker.worker_id) == 3
        assert value(samples, "finejobs_worker_job_outcomes_total", kind="ok", outcome="succeeded") == 2
        assert value(samples, "finejobs_worker_job_outcomes_total", kind="hold", outcome="failed") == 0
        assert value(samples, "finejobs_worker_jobs_claimed_total", kind="hold") == 1
        release.set()
        wait_until(lambda: worker.stats["succeeded"] == 3, what="the held job")
    samples = scrape(url)
    assert named(samples, "finejobs_worker_in_flight") == {}  # a stopped worker is no longer shown
    assert value(samples, "finejobs_worker_job_outcomes_total", kind="hold", outcome="succeeded") == 1


def test_scheduler_ticks_fired_and_missed(queue: Queue, clock: FakeClock, ping: Any,
                                          server: Callable[[WorkerMetrics], MetricsServer]) -> None:
    queue.schedules.add("every-minute", ping, Every(minutes=1), misfire="coalesce",
                        misfire_grace=timedelta(seconds=10))
    queue.schedules.add("skipper", ping, Every(minutes=1), misfire="skip", misfire_grace=timedelta(seconds=10))
    metrics = WorkerMetrics()
    worker = inline_worker(queue, metrics)
    assert worker.scheduler is not None
    clock.advance(timedelta(minutes=10, seconds=30))  # down from 08:00 to 08:10:30: ticks 08:00..08:10 missed
    assert worker.scheduler.run_once(clock()) == 1  # coalesce: the latest missed tick; skip: none
    clock.set(T0 + timedelta(minutes=11, seconds=5))
    # 08:11, 5 s late, within the grace: skipper fires it; every-minute's 08:10 job still waits, so its
    # overlap policy ("skip") skips this tick
    assert worker.scheduler.run_once(clock()) == 1
    samples = scrape(server(metrics).url)
    fired = {dict(k)["schedule"]: v for k, v in named(samples, "finejobs_scheduler_ticks_fired_total").items()}
    missed = {dict(k)["schedule"]: v for k, v in named(samples, "finejobs_scheduler_ticks_missed_total").items()}
    assert fired == {"every-minute": 1, "skipper": 1}
    assert missed == {"every-minute": 11, "skipper": 11}
    assert {s.name: s.skipped for s in queue.schedules.list()} == missed  # as the schedules count them


class Broken(finejobs.WorkerObserver):
    def jobs_claimed(self, worker: Worker, jobs: Any) -> None:
        raise RuntimeError("observer bug")

    def job_finished(self, worker: Worker, job: Any, outcome: str, duration: float) -> None:
        raise RuntimeError("observer bug")


def test_a_failing_observer_never_stops_a_worker(queue: Queue, caplog: pytest.LogCaptureFixture) -> None:
    @queue.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        pass

    metrics = WorkerMetrics()
    worker = queue.worker(observers=[Broken()], listen=False, register=False, run_scheduler=False)
    assert isinstance(worker, Worker)
    worker.observe(metrics)
    queue.kind("ok").enqueue_many([{}, {}])
    with caplog.at_level(logging.ERROR, logger="finejobs.worker"):
        assert len(worker.work_once()) == 2
        queue.enqueue("ok", {})
        assert len(worker.work_once()) == 1
    assert worker.stats["succeeded"] == 3
    failures = [r.getMessage() for r in caplog.records if "observer Broken failed" in r.getMessage()]
    assert len(failures) == 2, failures  # once per event, not once per job
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "finejobs_worker_job_outcomes_total", kind="ok", outcome="succeeded") == 3


def test_observers_reach_every_worker_of_a_group_and_bad_ones_are_refused(queue: Queue) -> None:
    @queue.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        pass

    metrics = WorkerMetrics()
    group = WorkerGroup(queue, databases=["default", "default"], observers=[metrics], listen=False)
    assert [len(w.observers) for w in group.workers] == [1, 1]
    metrics.attach(group)  # twice is once
    assert [len(w.observers) for w in group.workers] == [1, 1]
    with pytest.raises(TypeError, match="an observer needs at least one of the methods"):
        queue.worker(observers=[object()], listen=False)
    with pytest.raises(ConfigurationError, match=r"observes a finejobs\.Worker or WorkerGroup"):
        metrics.attach(queue)  # type: ignore[arg-type]


def test_serve_refuses_bad_ports_and_a_port_in_use() -> None:
    metrics = WorkerMetrics()
    for port in (-1, 65536, "9464", True, 1.5):
        with pytest.raises(ConfigurationError, match=r"metrics port must be an integer within 0\.\.65535"):
            serve(metrics.registry, port=port)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="metrics host"):
        serve(metrics.registry, port=0, host="")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            serve(metrics.registry, port=port)


# ---------------------------------------------------------------- the console's metrics of the queue


@pytest.fixture
def populated(kinds: Queue, clock: FakeClock, ping: Any) -> Queue:
    """Jobs in two shards, in every state a worker leaves them, some expiring soon; pauses; a registered
    worker; two schedules (one paused)."""
    queue = kinds
    queue.kind("ok").enqueue_many([JobSpec({}, shard="district-1"), JobSpec({}, shard="district-1"),
                                   JobSpec({}, shard="district-1", expires_at=T0 + 10 * MINUTE),
                                   JobSpec({}, shard="district-1", expires_at=T0 + 14 * MINUTE),
                                   JobSpec({}, shard="district-1", expires_at=T0 + 16 * MINUTE),
                                   JobSpec({}, shard="district-2", run_at=T0 + timedelta(hours=1))])
    queue.kind("boom").enqueue_many([JobSpec({}, shard="district-2"), JobSpec({}, shard="district-2")])
    worker = queue.worker(shards=["district-2"], listen=False, run_scheduler=False)
    assert isinstance(worker, Worker)
    assert len(worker.work_once()) == 2  # the boom jobs fail; the scheduled one waits
    assert worker.registry is not None
    worker.registry.run_once(clock())
    admin = Admin(queue)
    admin.pause(kind="ok", shard="district-2")
    admin.pause(shard="district-3")
    queue.schedules.add("hourly", ping, Every(hours=1), start=T0 + timedelta(hours=1))
    queue.schedules.add("stopped", ping, Every(hours=1), start=T0 + timedelta(hours=1), paused=True)
    clock.advance(20 * SECOND)  # the due district-1 jobs have waited 20 s
    return queue


def test_console_metrics_count_the_queue_exactly(populated: Queue, clock: FakeClock) -> None:
    admin = Admin(populated)
    samples = parse(generate_latest(console_registry(admin)).decode())
    assert value(samples, "finejobs_up") == 1
    assert named(samples, "finejobs_jobs_total") == {
        frozenset({("state", s)}): n for s, n in {"scheduled": 1, "available": 5, "running": 0, "succeeded": 0,
                                                  "failed": 2, "expired": 0, "cancelled": 0}.items()}
    by_kind = {(dict(k)["kind"], dict(k)["state"]): v for k, v in named(samples, "finejobs_jobs_by_kind").items()}
    assert {k: v for k, v in by_kind.items() if v} == {("ok", "available"): 5, ("ok", "scheduled"): 1,
                                                      ("boom", "failed"): 2}
    assert {kind for kind, _ in by_kind} == {"ok", "boom", "flaky", "quit", "late", "ping"}  # every kind, from 0
    by_shard = {(dict(k)["shard"], dict(k)["state"]): v for k, v in named(samples, "finejobs_jobs_by_shard").items()}
    assert {k: v for k, v in by_shard.items() if v} == {("district-1", "available"): 5,
                                                        ("district-2", "scheduled"): 1, ("district-2", "failed"): 2}
    assert named(samples, "finejobs_lag_seconds") == {frozenset({("shard", "district-1")}): 20.0,
                                                      frozenset({("shard", "district-2")}): 0.0}
    assert named(samples, "finejobs_jobs_expiring_soon") == {frozenset({("shard", "district-1")}): 2,
                                                             frozenset({("shard", "district-2")}): 0}
    assert named(samples, "finejobs_paused") == {frozenset({("kind", "ok"), ("shard", "district-2")}): 1,
                                                 frozenset({("kind", ""), ("shard", "district-3")}): 1}
    assert value(samples, "finejobs_stats_capped") == 0
    (worker_id,) = {dict(k)["worker"] for k in named(samples, "finejobs_worker_up")}
    assert value(samples, "finejobs_worker_up", worker=worker_id) == 1
    assert value(samples, "finejobs_worker_in_flight", worker=worker_id) == 0
    assert value(samples, "finejobs_worker_concurrency", worker=worker_id) == 10
    assert value(samples, "finejobs_worker_jobs_claimed", worker=worker_id) == 2
    assert value(samples, "finejobs_worker_jobs", worker=worker_id, outcome="failed") == 2
    assert value(samples, "finejobs_worker_jobs", worker=worker_id, outcome="succeeded") == 0
    assert named(samples, "finejobs_schedules") == {
        frozenset({("status", s)}): n for s, n in {"active": 1, "paused": 1, "finished": 0, "failed": 0}.items()}
    clock.advance(timedelta(minutes=1))  # the registry row is now 80 s old: that worker is gone
    fresh = parse(generate_latest(console_registry(Admin(populated))).decode())
    assert value(fresh, "finejobs_worker_up", worker=worker_id) == 0
    assert value(fresh, "finejobs_lag_seconds", shard="district-1") == 80.0


def test_console_metrics_are_reused_for_a_few_seconds_and_served_as_asgi(populated: Queue) -> None:
    registry = console_registry(Admin(populated))
    first = parse(generate_latest(registry).decode())
    populated.kind("ok").enqueue_many([JobSpec({}, shard="district-1")] * 3)
    assert parse(generate_latest(registry).decode()) == first  # within the TTL: nothing read again

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=console_app(Admin(populated)))
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            return await client.get("/metrics")

    response = asyncio.run(get())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    served = parse(response.text)
    assert value(served, "finejobs_jobs_total", state="available") == 8  # a new Admin reads the new jobs


def test_console_metrics_say_when_the_database_cannot_be_read(caplog: pytest.LogCaptureFixture) -> None:
    queue = Queue("postgresql://postgres:s3cret-pw@127.0.0.1:1/nothing")  # nothing listens on port 1
    try:
        with caplog.at_level(logging.WARNING, logger="finejobs.metrics"):
            samples = parse(generate_latest(console_registry(Admin(queue))).decode())
    finally:
        queue.close()
    assert samples == {("finejobs_up", frozenset()): 0}
    assert "cannot read the queue" in caplog.text
    assert "s3cret-pw" not in caplog.text


def test_console_registry_needs_an_admin(queue: Queue) -> None:
    with pytest.raises(ConfigurationError, match=r"needs a finejobs\.Admin"):
        console_registry(queue)  # type: ignore[arg-type]
