"""The operations API (finejobs.admin) on a big table: each page, count and stats call against raw SQL.

A database of its own gets N finished jobs (80% succeeded, 12% failed, 5% cancelled, 3% expired; 5 kinds,
4 shards in the default partition, a month of history) and M waiting ones (half due, half scheduled, a tenth
with an expiry), written by INSERT ... SELECT generate_series, then vacuumed and analysed as a long-lived
table is. Then, in rounds (every call once per round, so a drift of the machine's load hits every figure
alike), each call is timed; the table gives p50 and p95 per call and its ratio (p50 / p50) to a raw-SQL
baseline measured in the same rounds on the same table: ``SELECT * ... ORDER BY id DESC LIMIT 50`` for
reads of a page, a plain ``count(*)`` of the table for counts. Target: every call under 200 ms p95.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

import finejobs
from bench.core import create_database, drop_database
from finejobs.admin import Admin
from finejobs.filters import JobFilter, make_cursor
from finejobs.jobs import JobState

TARGET_MS = 200.0
KINDS = ("dosage.alert", "dosage.alert", "sms.send", "report.build", "sync.patient")  # dosage.alert: 2 in 5
SHARDS = 4

_FILL_FINISHED = """
INSERT INTO finejobs_jobs (kind, shard, payload, state, attempt, max_attempts, errors, created_at, started_at,
                           finished_at, run_at)
SELECT (%(kinds)s::text[])[1 + g %% 5], 'district-' || (1 + (g / 7) %% %(shards)s),
       jsonb_build_object('patient_id', g, 'dose', '08:00'), s.state,
       CASE s.state WHEN 'failed' THEN 3 WHEN 'expired' THEN 0 ELSE 1 END, 3,
       CASE s.state
           WHEN 'failed' THEN jsonb_build_array(jsonb_build_object(
               'attempt', 3, 'at', t.at, 'error', 'GatewayError', 'traceback', NULL, 'worker', 'worker-1',
               'message', (ARRAY['timeout talking to the SMS gateway', 'HTTP 503 from the gateway',
                                 'invalid phone number for patient ' || g])[1 + g %% 3]))
           WHEN 'cancelled' THEN jsonb_build_array(jsonb_build_object(
               'attempt', 1, 'at', t.at, 'error', 'Cancelled', 'message', 'patient opted out', 'traceback', NULL,
               'worker', NULL))
           ELSE '[]'::jsonb END,
       t.at, t.at, t.at + interval '2 seconds', t.at
FROM generate_series(1, %(n)s) AS g
CROSS JOIN LATERAL (SELECT CASE WHEN g %% 100 < 80 THEN 'succeeded' WHEN g %% 100 < 92 THEN 'failed'
                                WHEN g %% 100 < 97 THEN 'cancelled' ELSE 'expired' END AS state) AS s
CROSS JOIN LATERAL (SELECT now() - interval '30 days' + g * (interval '30 days' / %(n)s) AS at) AS t
"""

_FILL_WAITING = """
INSERT INTO finejobs_jobs (kind, shard, payload, created_at, run_at, expires_at)
SELECT (%(kinds)s::text[])[1 + g %% 5], 'district-' || (1 + (g / 7) %% %(shards)s),
       jsonb_build_object('patient_id', g, 'dose', '08:00'), now() - interval '1 hour',
       CASE WHEN g %% 2 = 0 THEN now() - g * interval '10 ms' ELSE now() + g * interval '1 second' END,
       CASE WHEN g %% 10 = 0 THEN now() + (g %% 3600) * interval '1 second' END
FROM generate_series(1, %(n)s) AS g
"""


@dataclass(frozen=True)
class AdminRow:
    """One call: its timings in milliseconds, one per round."""

    name: str
    samples: tuple[float, ...]
    baseline: str  # the raw-SQL row it is compared with ("" for a baseline itself)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


@dataclass(frozen=True)
class AdminResult:
    finished: int
    waiting: int
    repeats: int
    fill_seconds: float
    rows: tuple[AdminRow, ...]
    load: tuple[float, float]


def fill(url: str, *, finished: int, waiting: int) -> float:
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        params = {"kinds": list(KINDS), "shards": SHARDS}
        if finished:
            conn.execute(_FILL_FINISHED, {**params, "n": finished})
        if waiting:
            conn.execute(_FILL_WAITING, {**params, "n": waiting})
        # Settle what a long-lived table has settled: hint bits, the visibility map, statistics.
        conn.execute("VACUUM (FREEZE, ANALYZE) finejobs_jobs")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - start


def _registry(queue: finejobs.Queue) -> None:
    """A few workers (two of them gone) and pauses, as a running installation has them."""
    now = datetime.now(UTC)
    for i in range(8):
        seen = now - (timedelta(minutes=5) if i >= 6 else timedelta(seconds=2))
        queue.store.worker_upsert(values={
            "id": f"bench-worker-{i}", "host": f"host-{i % 3}", "pid": 1000 + i, "version": finejobs.__version__,
            "database": "default", "shards": [f"district-{1 + i % SHARDS}"], "kinds": sorted(set(KINDS)),
            "concurrency": 16, "started_at": now - timedelta(hours=1), "seen_at": seen, "in_flight": 3,
            "counters": {"succeeded": 1000 * i, "failed": i}, "info": {}})
    admin = Admin(queue, actor="bench")
    admin.pause(kind="report.build", reason="bench")
    admin.pause(shard="district-4", reason="bench")


def bench_admin(server_url: str, *, finished: int, waiting: int, repeats: int) -> AdminResult:
    url = create_database(server_url)
    load_before = os.getloadavg()[0]
    try:
        fill_seconds = fill(url, finished=finished, waiting=waiting)
        queue = finejobs.Queue(url)
        try:
            _registry(queue)
            rows = _measure(queue, url, repeats=repeats)
        finally:
            queue.close()
    finally:
        drop_database(server_url, url)
    return AdminResult(finished, waiting, repeats, fill_seconds, tuple(rows), (load_before, os.getloadavg()[0]))


def _measure(queue: finejobs.Queue, url: str, *, repeats: int) -> list[AdminRow]:
    admin = Admin(queue, actor="bench")
    with psycopg.connect(url, autocommit=True) as conn:
        low, high = conn.execute("SELECT min(id), max(id) FROM finejobs_jobs").fetchall()[0]
    middle = (low + high) // 2 if low is not None else 1
    deep = make_cursor(admin._cursor_key(), JobFilter(), 0, middle)  # as a reader has it half way down the list
    raw = psycopg.connect(url, autocommit=True)
    calls: list[Call] = [
        ("raw: SELECT * ORDER BY id DESC LIMIT 50", "", lambda: raw.execute(
            "SELECT * FROM finejobs_jobs ORDER BY id DESC LIMIT 50").fetchall()),
        ("raw: SELECT count(*)", "", lambda: raw.execute("SELECT count(*) FROM finejobs_jobs").fetchall()),
        ("jobs(): first page", "page", lambda: admin.jobs(limit=50)),
        ("jobs(): state=failed", "page", lambda: admin.jobs(JobFilter(state=JobState.FAILED), limit=50)),
        ("jobs(): kind=sms.send", "page", lambda: admin.jobs(JobFilter(kind="sms.send"), limit=50)),
        ("jobs(): shard=district-2", "page", lambda: admin.jobs(JobFilter(shard="district-2"), limit=50)),
        ("jobs(): state=failed, error='invalid phone'", "page",
         lambda: admin.jobs(JobFilter(state=JobState.FAILED, error="invalid phone"), limit=50)),
        ("jobs(): error='invalid phone' (any state)", "page",
         lambda: admin.jobs(JobFilter(error="invalid phone"), limit=50)),
        ("jobs(): state=scheduled", "page", lambda: admin.jobs(JobFilter(state=JobState.SCHEDULED), limit=50)),
        ("jobs(): deep page (cursor half way)", "page", lambda: admin.jobs(cursor=deep, limit=50)),
        ("jobs(): failed + kind, 500 a page", "page",
         lambda: admin.jobs(JobFilter(state=JobState.FAILED, kind="dosage.alert"), limit=500)),
        ("job(id)", "page", lambda: admin.job(middle)),
        ("count(): state=failed", "count", lambda: admin.count(JobFilter(state=JobState.FAILED))),
        ("count(): kind=sms.send, shard=district-2", "count",
         lambda: admin.count(JobFilter(kind="sms.send", shard="district-2"))),
        ("count(): state=failed, error='timeout'", "count",
         lambda: admin.count(JobFilter(state=JobState.FAILED, error="timeout"))),
        ("retry_matching(failed, kind), dry run", "count",
         lambda: admin.retry_matching(JobFilter(state=JobState.FAILED, kind="sms.send"), dry_run=True)),
        ("stats(fresh=True)", "count", lambda: admin.stats(fresh=True)),
        ("stats() (cached)", "page", lambda: admin.stats()),
        ("shards()", "count", lambda: admin.shards()),
        ("paused()", "page", lambda: admin.paused()),
        ("workers()", "page", lambda: admin.workers()),
    ]
    try:
        return time_rounds(calls, repeats=repeats, baselines={"page": calls[0][0], "count": calls[1][0]})
    finally:
        raw.close()


Call = tuple[str, str, Callable[[], Any]]  # (name, the kind of baseline it is compared with, the call)


def time_rounds(calls: list[Call], *, repeats: int, baselines: dict[str, str]) -> list[AdminRow]:
    """Warm every call twice, then time them in rounds (each call once a round, so a drift of the machine's
    load hits every figure alike); ``baselines`` maps a call's kind to the name of its baseline row."""
    for _, _, call in calls:  # warm: connections, the prepared statements of psycopg, the cache
        for _ in range(2):
            call()
    samples: dict[str, list[float]] = {name: [] for name, _, _ in calls}
    for _ in range(repeats):
        for name, _, call in calls:
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1000)
    return [AdminRow(name, tuple(samples[name]), baselines.get(kind, "")) for name, kind, _ in calls]


def admin_markdown(result: AdminResult) -> str:
    by_name = {r.name: r for r in result.rows}
    lines = [
        f"Operations API: {result.finished:,} finished + {result.waiting:,} waiting jobs (filled in "
        f"{result.fill_seconds:.0f} s), {result.repeats} rounds of every call; p50 / p95 in ms; ratio = p50 / the "
        "baseline's p50 (raw SQL on the same table, same rounds)",
        "",
        f"| call | p50 ms | p95 ms | baseline | ratio | p95 < {TARGET_MS:.0f} ms |",
        "| --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in result.rows:
        if r.baseline:
            base = by_name[r.baseline]
            ratio = f"{r.p50 / base.p50:.2f}" if base.p50 else "-"
            verdict = "yes" if r.p95 < TARGET_MS else "**no**"
            lines.append(f"| {r.name} | {r.p50:.1f} | {r.p95:.1f} | {r.baseline.removeprefix('raw: ')} | {ratio} "
                         f"| {verdict} |")
        else:
            lines.append(f"| {r.name} (baseline) | {r.p50:.1f} | {r.p95:.1f} | — | 1.00 | — |")
    slow = [r.name for r in result.rows if r.baseline and r.p95 >= TARGET_MS]
    smoke = " (a --quick size: a smoke test, not a measurement)" if result.finished < 1_000_000 else ""
    lines += ["", f"Target{smoke}: every call under {TARGET_MS:.0f} ms p95: "
              + ("met." if not slow else "missed by " + ", ".join(slow) + ".")
              + f" Load average (1 min, {os.cpu_count()} CPUs): {result.load[0]:.1f} before, {result.load[1]:.1f} "
              "after."]
    return "\n".join(lines)


def write_admin_json(path: Path, title: str, result: AdminResult) -> None:
    doc = {"title": title, **asdict(result),
           "rows": [asdict(r) | {"p50_ms": r.p50, "p95_ms": r.p95, "target_met": r.p95 < TARGET_MS if r.baseline
                                 else None} for r in result.rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
