"""The memory of a worker process: ``finejobs worker --concurrency 50`` draining a table of 1M waiting jobs.

Three processes, one after another, their resident set (RSS, psutil) sampled every 0.1 s:

- the floor: a Python process that imported finejobs and the app, connected once, and does nothing;
- a raw-SQL loop (the baseline): a psycopg connection claiming 50 rows at a time with SKIP LOCKED and deleting
  them, as long as the worker runs;
- the worker: ``finejobs worker --app bench.noop_app:queue --concurrency 50`` on the same table.

The issue's target: a worker at concurrency 50 with 1M waiting jobs stays under 100 MB RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.core import REPO_ROOT, create_database, drop_database
from finejobs.store import libpq_url

TARGET_MB = 100.0

_FILL = """
INSERT INTO finejobs_jobs (kind, shard, payload, max_attempts, run_at)
SELECT 'noop', 'default', jsonb_build_object('n', g), 1, now() - interval '1 minute'
FROM generate_series(1, %(n)s) AS g
"""

_FLOOR = """
import sys, time
import finejobs, bench.noop_app as app
app.queue.store.database_id()
print("ready", flush=True)
time.sleep(float(sys.argv[1]))
"""

_RAW = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
end = time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
while time.monotonic() < end:
    conn.execute("DELETE FROM finejobs_jobs WHERE id = ANY(ARRAY(SELECT id FROM finejobs_jobs "
                 "WHERE state = 'available' AND shard = 'default' ORDER BY priority DESC, run_at, id LIMIT 50 "
                 "FOR UPDATE SKIP LOCKED))")
"""


@dataclass(frozen=True)
class MemoryRow:
    name: str
    peak_mb: float
    last_mb: float
    jobs_done: int


@dataclass(frozen=True)
class MemoryResult:
    waiting: int
    seconds: float
    rows: tuple[MemoryRow, ...]

    @property
    def worker(self) -> MemoryRow:
        return self.rows[-1]


def _sample(proc: subprocess.Popen[bytes], seconds: float) -> tuple[float, float]:
    """Peak and last RSS in MB of ``proc`` and its children over ``seconds``."""
    root = psutil.Process(proc.pid)
    peak = last = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            break
        last = rss / 2**20
        peak = max(peak, last)
        time.sleep(0.1)
    return peak, last


def _count(url: str) -> int:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE state = 'available'").fetchone()
    return int(row[0]) if row else 0


def _run(name: str, args: list[str], url: str, seconds: float, waiting: int) -> MemoryRow:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE finejobs_jobs")
        conn.execute(_FILL, {"n": waiting})
        conn.execute("VACUUM (ANALYZE) finejobs_jobs")
    env = dict(os.environ, FINEJOBS_DATABASE_URL=url)
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if "worker" not in args:
            assert proc.stdout is not None
            proc.stdout.readline()  # "ready"
        peak, last = _sample(proc, seconds)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return MemoryRow(name, peak, last, waiting - _count(url))


def bench_memory(server_url: str, *, waiting: int, seconds: float) -> MemoryResult:
    url = create_database(server_url)
    try:
        python = sys.executable
        rows = (
            _run("floor: Python with finejobs and the app imported, connected, idle",
                 [python, "-c", _FLOOR, str(seconds)], url, seconds, waiting),
            _run("raw SQL loop: claim 50 with SKIP LOCKED and delete (psycopg)",
                 [python, "-c", _RAW, libpq_url(url), str(seconds)], url, seconds, waiting),
            _run("finejobs worker --concurrency 50",
                 [python, "-m", "finejobs", "worker", "--app", "bench.noop_app:queue", "--concurrency", "50",
                  "--log-level", "WARNING"], url, seconds, waiting),
        )
    finally:
        drop_database(server_url, url)
    return MemoryResult(waiting, seconds, rows)


def memory_markdown(result: MemoryResult) -> str:
    lines = [f"Memory: {result.waiting:,} waiting no-op jobs, each process sampled every 0.1 s for "
             f"{result.seconds:g} s (RSS, psutil)", "",
             "| process | peak RSS MB | last RSS MB | jobs done meanwhile |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r.name} | {r.peak_mb:.1f} | {r.last_mb:.1f} | {r.jobs_done:,} |" for r in result.rows]
    worker = result.worker
    verdict = "met" if worker.peak_mb < TARGET_MB else "not met"
    lines += ["", f"Target: a worker at concurrency 50 beside {result.waiting:,} waiting jobs under "
                  f"{TARGET_MB:.0f} MB RSS: {verdict} (peak {worker.peak_mb:.1f} MB)."]
    return "\n".join(lines)


def write_memory_json(path: Path, title: str, result: MemoryResult) -> None:
    data: dict[str, Any] = {"title": title, "waiting": result.waiting, "seconds": result.seconds,
                            "rows": [r.__dict__ for r in result.rows], "target_mb": TARGET_MB}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
