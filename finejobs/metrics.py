"""Prometheus metrics (the extra ``finejobs[metrics]``: prometheus-client). docs/metrics.md lists them all.

Two places serve them:

* **The console** (or any ASGI app): ``console_registry(admin)`` reads the queue as the operations API sees
  it: jobs by state, kind and shard, lag and jobs expiring soon per shard, pauses, the worker registry,
  schedules. A scrape reuses what it read for STATS_TTL seconds, and otherwise issues a few bounded queries
  per database (``Admin.stats()``, the worker registry, the schedules), whatever the table's size.
  ``console_app(admin)`` is that registry as an ASGI app (the web console mounts it at ``/metrics``).
* **Each worker process**: ``WorkerMetrics`` observes the workers it is attached to and counts what they
  do: jobs claimed, outcomes, durations, schedule ticks fired and missed; ``serve(registry, port=...)``
  serves a registry over HTTP (``finejobs worker --metrics-port N`` does both).

```python
metrics = finejobs.metrics.WorkerMetrics()
worker = queue.worker(observers=[metrics])
server = finejobs.metrics.serve(metrics.registry, port=9400)     # http://127.0.0.1:9400/metrics
```
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from finejobs.admin import STATS_TTL, Admin, WorkerInfo
from finejobs.errors import ConfigurationError
from finejobs.jobs import Job, JobState
from finejobs.masking import mask_passwords
from finejobs.runtime.observers import OUTCOMES, WorkerObserver
from finejobs.runtime.worker import Worker
from finejobs.runtime.worker_group import WorkerGroup

log = logging.getLogger("finejobs.metrics")

# Seconds: from a few milliseconds (a no-op job) to an hour (a long batch item).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 1800.0, 3600.0)
STATES = tuple(s.value for s in JobState)
SCHEDULE_STATUSES = ("active", "paused", "finished", "failed")


# ---------------------------------------------------------------- the console: the queue as Admin sees it


class ConsoleCollector:
    """A prometheus_client collector over ``admin``: every scrape within ``ttl`` seconds of the last read
    gets the same values (concurrent scrapes wait for one read). If the database cannot be read,
    ``finejobs_up`` is 0 and the other metrics are left out of that scrape."""

    def __init__(self, admin: Admin, *, ttl: float = STATS_TTL) -> None:
        if not isinstance(admin, Admin):
            raise ConfigurationError(f"console_registry needs a finejobs.Admin, got {type(admin).__name__}")
        self.admin = admin
        self.ttl = ttl
        self._lock = threading.Lock()
        self._read: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._read is not None and time.monotonic() - self._read[0] < self.ttl:
                return list(self._read[1])
            families = self._families()
            self._read = (time.monotonic(), families)
            return list(families)

    def _families(self) -> list[Metric]:
        up = GaugeMetricFamily("finejobs_up", "1 if the last read of the queue's databases succeeded, else 0")
        try:
            overview = self.admin.stats()
            workers = self.admin.workers()
            schedules = self.admin.schedules.list()
        except Exception as exc:  # a scrape must answer: say the queue could not be read
            log.warning("metrics: cannot read the queue: %s", mask_passwords(f"{type(exc).__name__}: {exc}")[:500])
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        families: list[Metric] = [up]
        families.append(_gauge("finejobs_jobs_total", "Jobs by state (a gauge: each stored state counted up "
                                                      "to the operations API's STATS_CAP)", ["state"],
                               {(state,): overview.by_state.get(state, 0) for state in STATES}))
        kinds = sorted(set(overview.by_kind) | set(self.admin.queue.kinds))
        families.append(_gauge("finejobs_jobs_by_kind", "Jobs by kind and state", ["kind", "state"],
                               {(kind, state): overview.by_kind.get(kind, {}).get(state, 0)
                                for kind in kinds for state in STATES}))
        shards = sorted(set(overview.by_shard) | set(overview.lag_seconds) | set(overview.expiring_soon))
        families.append(_gauge("finejobs_jobs_by_shard", "Jobs by shard and state", ["shard", "state"],
                               {(shard, state): overview.by_shard.get(shard, {}).get(state, 0)
                                for shard in shards for state in STATES}))
        families.append(_gauge("finejobs_lag_seconds", "Age of the oldest due waiting job per shard (0: none "
                                                       "waiting)", ["shard"],
                               {(shard,): overview.lag_seconds.get(shard, 0.0) for shard in shards}))
        families.append(_gauge("finejobs_jobs_expiring_soon", "Waiting jobs that expire within 15 minutes, "
                                                              "per shard", ["shard"],
                               {(shard,): overview.expiring_soon.get(shard, 0) for shard in shards}))
        families.append(_gauge("finejobs_paused", "1 per pause: a kind, a shard, or a kind within a shard "
                                                  "(an empty label: every kind or every shard)", ["kind", "shard"],
                               {(p.kind or "", p.shard or ""): 1 for p in overview.paused}))
        families.append(_gauge("finejobs_stats_capped", "1 if a count stopped at its cap (the counts are then "
                                                        "lower bounds)", [], {(): int(overview.capped)}))
        families += _worker_families(workers)
        statuses = Tally(s.status for s in schedules)
        families.append(_gauge("finejobs_schedules", "Schedules by status", ["status"],
                               {(status,): statuses.get(status, 0) for status in SCHEDULE_STATUSES}))
        return families


def _worker_families(workers: Sequence[WorkerInfo]) -> list[Metric]:
    return [
        _gauge("finejobs_worker_up", "1 while a registered worker refreshes its registry row, 0 once it stopped "
                                     "refreshing it", ["worker"], {(w.id,): int(w.alive) for w in workers}),
        _gauge("finejobs_worker_in_flight", "Jobs a worker holds (claimed, running or with an outcome not yet "
                                            "written), as its registry row says", ["worker"],
               {(w.id,): w.in_flight for w in workers}),
        _gauge("finejobs_worker_concurrency", "A worker's slots (jobs it runs at once)", ["worker"],
               {(w.id,): w.concurrency for w in workers}),
        _gauge("finejobs_worker_jobs_claimed", "Jobs a worker claimed since it started, as its registry row "
                                               "says (refreshed every few seconds)", ["worker"],
               {(w.id,): int(w.counters.get("claimed", 0)) for w in workers}),
        _gauge("finejobs_worker_jobs", "Outcomes a worker wrote since it started, as its registry row says",
               ["worker", "outcome"],
               {(w.id, outcome): int(w.counters.get(outcome, 0)) for w in workers for outcome in OUTCOMES}),
    ]


def _gauge(name: str, documentation: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def console_registry(admin: Admin) -> CollectorRegistry:
    """A registry holding the console's metrics of ``admin``'s queue (serve it with ``console_app`` or
    ``prometheus_client.make_asgi_app``, ``generate_latest``...). Nothing is read until the first scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector(admin))
    return registry


def console_app(admin: Admin) -> Callable[..., Any]:
    """The console's metrics as an ASGI app (mount it at ``/metrics``)."""
    return make_asgi_app(console_registry(admin))


# ---------------------------------------------------------------- each worker process: what its workers do


class WorkerMetrics(WorkerObserver):
    """Counters, a histogram and gauges of the workers it observes, in ``registry`` (default: a registry of
    its own). Attach it with ``Worker(..., observers=[metrics])``, ``queue.worker(observers=[...])`` or
    ``metrics.attach(worker)``; one WorkerMetrics may observe several workers (a WorkerGroup): they add up."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self.claimed = Counter("finejobs_worker_jobs_claimed", "Jobs claimed by this process's workers",
                               ["kind"], registry=self.registry)
        self.outcomes = Counter("finejobs_worker_job_outcomes", "Outcomes of attempts written by this "
                                "process's workers (discarded: the job was no longer the worker's)",
                                ["kind", "outcome"], registry=self.registry)
        self.duration = Histogram("finejobs_job_duration_seconds", "Seconds from claim to outcome, per attempt",
                                  ["kind", "outcome"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.ticks_fired = Counter("finejobs_scheduler_ticks_fired", "Schedule ticks that made a job, fired by "
                                   "this process's schedulers", ["schedule"], registry=self.registry)
        self.ticks_missed = Counter("finejobs_scheduler_ticks_missed", "Schedule ticks that made no job (the "
                                    "misfire or overlap policy skipped them)", ["schedule"], registry=self.registry)
        self._workers: dict[str, Worker] = {}
        self._lock = threading.Lock()
        self.registry.register(_LiveWorkers(self))

    def attach(self, target: Worker | WorkerGroup) -> Worker | WorkerGroup:
        """Observe ``target`` (every worker of a group); returns it."""
        if not isinstance(target, Worker | WorkerGroup):
            raise ConfigurationError(f"WorkerMetrics observes a finejobs.Worker or WorkerGroup, got "
                                     f"{type(target).__name__}")
        target.observe(self)
        return target

    def live(self) -> list[Worker]:
        with self._lock:
            return list(self._workers.values())

    def worker_started(self, worker: Worker) -> None:
        with self._lock:
            self._workers[worker.worker_id] = worker
        for kind in worker.kinds:  # every series from 0, so that rate() sees the first job
            self.claimed.labels(kind)
            for outcome in OUTCOMES:
                self.outcomes.labels(kind, outcome)

    def worker_stopped(self, worker: Worker) -> None:
        with self._lock:
            self._workers.pop(worker.worker_id, None)

    def jobs_claimed(self, worker: Worker, jobs: Sequence[Job]) -> None:
        for kind, n in Tally(job.kind for job in jobs).items():
            self.claimed.labels(kind).inc(n)

    def job_finished(self, worker: Worker, job: Job, outcome: str, duration: float) -> None:
        self.outcomes.labels(job.kind, outcome).inc()
        if outcome != "discarded":
            self.duration.labels(job.kind, outcome).observe(duration)

    def schedule_fired(self, worker: Worker, schedule: str, fired: int, skipped: int) -> None:
        if fired:
            self.ticks_fired.labels(schedule).inc(fired)
        if skipped:
            self.ticks_missed.labels(schedule).inc(skipped)


class _LiveWorkers:
    """The gauges of the running workers a WorkerMetrics observes, read at each scrape (no database)."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        workers = self.metrics.live()
        return [
            _gauge("finejobs_worker_in_flight", "Jobs the worker holds (claimed, running or with an outcome not "
                                                "yet written)", ["worker"],
                   {(w.worker_id,): w.in_flight() for w in workers}),
            _gauge("finejobs_worker_concurrency", "The worker's slots (jobs it runs at once)", ["worker"],
                   {(w.worker_id,): w.concurrency for w in workers}),
        ]


# ---------------------------------------------------------------- serving a registry over HTTP


@dataclass
class MetricsServer:
    """A running metrics HTTP server (a daemon thread); ``close()`` stops it."""

    server: Any
    thread: threading.Thread

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(registry: CollectorRegistry, *, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` (and at every other path) from a daemon thread.
    ``port`` 0 takes a free port (see ``MetricsServer.port``). Loopback by default: pass ``host="0.0.0.0"``
    for Prometheus on another machine."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"metrics port must be an integer within 0..65535, got {port!r}"[:200])
    if not isinstance(host, str) or not host or "\x00" in host:
        raise ConfigurationError(f"metrics host must be an address or a host name, got {host!r}"[:200])
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
    return MetricsServer(server, thread)
