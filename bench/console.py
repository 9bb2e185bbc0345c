"""The console on a big table: every page, REST call and a /metrics scrape over real HTTP, beside raw SQL.

A database of its own gets N finished and M waiting jobs (bench.admin's fill: 5 kinds, 4 shards, a month of
history, the last hour busy), a worker registry, pauses, schedules and audit entries. The console is served
by uvicorn (finejobs.web.serving) and asked with httpx over keep-alive connections, in rounds (every call
once per round). Each call's p50 / p95 is compared with two baselines of the same rounds: the raw SQL of a
page (``SELECT * ... ORDER BY id DESC LIMIT 50`` with psycopg) and the HTTP floor (a static file from the
same server). Target: every call under 200 ms p95.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import psycopg

import finejobs
import finejobs.web
from bench.admin import TARGET_MS, AdminResult, AdminRow, Call, _registry, fill, time_rounds
from bench.core import create_database, drop_database
from finejobs import Every
from finejobs.admin import Admin

_RECENT = """
UPDATE finejobs_jobs SET finished_at = now() - (id %% 3600) * interval '1 second',
                         started_at = now() - (id %% 3600) * interval '1 second' - interval '2 seconds',
                         run_at = now() - (id %% 3600) * interval '1 second' - interval '3 seconds'
WHERE id IN (SELECT id FROM finejobs_jobs WHERE state IN ('succeeded', 'failed') ORDER BY id DESC LIMIT %(n)s)
"""


_GROUPS = """
INSERT INTO finejobs_groups (name, total, succeeded, failed, expired, cancelled, sealed, created_at, sealed_at)
SELECT format('import-%s', g), 1000, 990, 10, 0, 0, true, now() - g * interval '1 hour', now() - g * interval '1 hour'
FROM generate_series(1, 60) AS g;
INSERT INTO finejobs_groups (name, total, succeeded, failed, expired, cancelled, sealed, created_at, sealed_at,
                             first_done_at, last_done_at)
SELECT 'renewals-bench', count(*), count(*) FILTER (WHERE state = 'succeeded'),
       count(*) FILTER (WHERE state = 'failed'), count(*) FILTER (WHERE state = 'expired'),
       count(*) FILTER (WHERE state = 'cancelled'), true, now() - interval '1 day', now() - interval '1 day',
       min(finished_at), max(finished_at)
FROM finejobs_jobs;
UPDATE finejobs_jobs SET group_id = (SELECT id FROM finejobs_groups WHERE name = 'renewals-bench');
"""


def _seed(queue: finejobs.Queue, url: str, *, recent: int) -> None:
    """The last hour's throughput, workers, pauses, 40 schedules, a page of audit entries, and groups: every
    job a member of one (``renewals-bench``: millions of members, thousands of them failed) and 60 small."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_RECENT, {"n": recent})
        conn.execute(_GROUPS)
        conn.execute("VACUUM (ANALYZE) finejobs_jobs")
    _registry(queue)

    @queue.job("report.build")
    def report(payload: dict[str, Any]) -> None: ...

    admin = Admin(queue, actor="bench")
    for i in range(40):
        admin.schedules.add(f"report-{i:02d}", "report.build", Every(timedelta(minutes=5 + i)),
                            payload={"district": 1 + i % 4})
    for i in range(20):
        admin.pause(kind=f"kind-{i}")
        admin.resume(kind=f"kind-{i}")


def bench_console(server_url: str, *, finished: int, waiting: int, repeats: int) -> AdminResult:
    url = create_database(server_url)
    load_before = os.getloadavg()[0]
    try:
        fill_seconds = fill(url, finished=finished, waiting=waiting)
        queue = finejobs.Queue(url)
        try:
            _seed(queue, url, recent=min(finished // 4, 50_000))
            with finejobs.web.serving(finejobs.web.app(queue)) as base:
                rows = _measure(base, url, repeats=repeats)
        finally:
            queue.close()
    finally:
        drop_database(server_url, url)
    return AdminResult(finished, waiting, repeats, fill_seconds, tuple(rows), (load_before, os.getloadavg()[0]))


def _measure(base: str, url: str, *, repeats: int) -> list[AdminRow]:
    with psycopg.connect(url, autocommit=True) as conn:
        failed = conn.execute("SELECT id FROM finejobs_jobs WHERE state = 'failed' ORDER BY id LIMIT 1 OFFSET 1000"
                              ).fetchall()[0][0]
    client = httpx.Client(base_url=base, timeout=30)
    raw = psycopg.connect(url, autocommit=True)

    def get(path: str) -> Callable[[], Any]:
        def call() -> None:
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status_code}: {response.text[:300]}")
        return call

    first = client.get("/api/v1/jobs", params={"limit": 50}).json()
    cursor = first.get("next_cursor")
    calls: list[Call] = [
        ("raw: SELECT * ORDER BY id DESC LIMIT 50", "", lambda: raw.execute(
            "SELECT * FROM finejobs_jobs ORDER BY id DESC LIMIT 50").fetchall()),
        ("raw: GET /static/console.css (the HTTP floor)", "", get("/static/console.css")),
        ("page /", "page", get("/")),
        ("page / (charts partial)", "page", get("/partials/overview")),
        ("page /jobs", "page", get("/jobs")),
        ("page /jobs?state=failed", "page", get("/jobs?state=failed")),
        ("page /jobs?kind=sms.send&shard=district-2", "page", get("/jobs?kind=sms.send&shard=district-2")),
        ("page /jobs?state=failed&error=invalid+phone", "page", get("/jobs?state=failed&error=invalid+phone")),
        ("page /jobs/{id}", "page", get(f"/jobs/{failed}")),
        ("page /schedules", "page", get("/schedules")),
        ("page /schedules/{name}", "page", get("/schedules/report-07")),
        ("page /shards", "page", get("/shards")),
        ("page /workers", "page", get("/workers")),
        ("page /audit", "page", get("/audit")),
        ("page /groups", "page", get("/groups")),
        ("page /groups/{name} (every job a member)", "page", get("/groups/renewals-bench")),
        ("page /groups/{name} (live partial)", "page", get("/partials/groups/renewals-bench")),
        ("GET /api/v1/jobs", "page", get("/api/v1/jobs")),
        ("GET /api/v1/jobs (next page)", "page", get(f"/api/v1/jobs?cursor={cursor}" if cursor else "/api/v1/jobs")),
        ("GET /api/v1/jobs?state=failed&kind=dosage.alert", "page", get("/api/v1/jobs?state=failed&kind=dosage.alert")),
        ("GET /api/v1/jobs/{id}", "page", get(f"/api/v1/jobs/{failed}")),
        ("GET /api/v1/jobs/count?state=failed", "page", get("/api/v1/jobs/count?state=failed")),
        ("GET /api/v1/stats", "page", get("/api/v1/stats")),
        ("GET /api/v1/activity", "page", get("/api/v1/activity")),
        ("GET /api/v1/schedules", "page", get("/api/v1/schedules")),
        ("GET /api/v1/shards", "page", get("/api/v1/shards")),
        ("GET /api/v1/workers", "page", get("/api/v1/workers")),
        ("GET /api/v1/groups", "page", get("/api/v1/groups")),
        ("GET /api/v1/groups/{name}", "page", get("/api/v1/groups/renewals-bench")),
        ("GET /metrics", "page", get("/metrics")),
    ]
    try:
        return time_rounds(calls, repeats=repeats, baselines={"page": calls[0][0]})
    finally:
        raw.close()
        client.close()


def console_markdown(result: AdminResult) -> str:
    from bench.admin import admin_markdown

    text = admin_markdown(result)
    floor = next(r for r in result.rows if r.name.startswith("raw: GET"))
    return (text.replace("Operations API:", "Console over HTTP:", 1)
            + f" The HTTP floor (a static file from the same server): p50 {floor.p50:.1f} ms, p95 {floor.p95:.1f} ms.")


__all__ = ["TARGET_MS", "bench_console", "console_markdown"]
