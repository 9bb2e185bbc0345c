"""Enqueue and processing benchmarks, each beside a raw-SQL baseline measured in the same run.

Processing is timed from the database's own records: every job is enqueued with the same future
``run_at``, workers start and idle, and the figure is ``n / (max(finished_at) - run_at)``. So worker
start-up and enqueue time never count, for one worker process or several.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg

import finejobs
from bench.noop_app import Noop
from finejobs import devdb

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH = 5000


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    jobs: int
    seconds: float
    baseline: str
    baseline_rate: float
    concurrency: int | None = None
    processes: int | None = None

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else float("inf")

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate if self.baseline_rate else float("nan")


def create_database(server_url: str) -> str:
    """A migrated database of the benchmark's own on that server."""
    url = devdb.create_database(server_url, prefix="finejobs_bench")
    queue = finejobs.Queue(url)
    queue.migrate()
    queue.close()
    return url


drop_database = devdb.drop_database


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
        conn.execute("VACUUM ANALYZE finejobs_jobs")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _queue(url: str, kind: str = "noop") -> tuple[finejobs.Queue, finejobs.JobKind[[Noop], None]]:
    """A queue with the no-op kind ``kind`` of bench.noop_app (``noop``, or ``noop_async``) registered."""
    queue = finejobs.Queue(url)

    @queue.job(kind, retry=finejobs.Retry(max_attempts=1))
    def noop(payload: Noop) -> None:  # the handler never runs here: this queue only enqueues
        return None

    return queue, noop


# ---------------------------------------------------------------- enqueue


def raw_insert_one_by_one(url: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        return _timed(lambda: [
            conn.execute("INSERT INTO finejobs_jobs (kind, payload) VALUES ('noop', %s::jsonb)",
                         (json.dumps({"n": i}),))
            for i in range(n)
        ])


def raw_insert_bulk(url: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        def run() -> None:
            for start in range(0, n, BATCH):
                payloads = [json.dumps({"n": i}) for i in range(start, min(n, start + BATCH))]
                conn.execute("INSERT INTO finejobs_jobs (kind, payload) "
                             "SELECT 'noop', p FROM unnest(%s::jsonb[]) AS p", (payloads,))
        return _timed(run)


def enqueue_one_by_one(url: str, n: int) -> float:
    queue, noop = _queue(url)
    seconds = _timed(lambda: [noop.enqueue(Noop(n=i)) for i in range(n)])
    queue.close()
    return seconds


def enqueue_bulk(url: str, n: int, *, run_at_in: float = 0.0, kind: str = "noop") -> float:
    queue, noop = _queue(url, kind)
    run_at = finejobs.clock.utcnow() + timedelta(seconds=run_at_in) if run_at_in else None

    def run() -> None:
        for start in range(0, n, BATCH):
            noop.enqueue_many([Noop(n=i) for i in range(start, min(n, start + BATCH))], run_at=run_at)

    seconds = _timed(run)
    queue.close()
    return seconds


def bench_enqueue(url: str, *, n_single: int, n_bulk: int, repeats: int = 3) -> list[Row]:
    """Each figure beside its raw baseline, the two run in turn ``repeats`` times on an emptied table: the
    median seconds of each (one pair of runs moved by ±10% on a quiet machine)."""
    def paired(raw: Callable[[], float], ours: Callable[[], float]) -> tuple[float, float]:
        raws, mine = [], []
        for _ in range(repeats):
            truncate(url)
            raws.append(raw())
            truncate(url)
            mine.append(ours())
        return statistics.median(raws), statistics.median(mine)

    raw_single, single = paired(lambda: raw_insert_one_by_one(url, n_single), lambda: enqueue_one_by_one(url, n_single))
    raw_bulk, bulk = paired(lambda: raw_insert_bulk(url, n_bulk), lambda: enqueue_bulk(url, n_bulk))
    return [Row("enqueue", "enqueue one by one", n_single, single, "raw INSERT per row", n_single / raw_single),
            Row("enqueue", f"enqueue_many ({BATCH:,} per call)", n_bulk, bulk, "raw INSERT ... unnest",
                n_bulk / raw_bulk)]


# ---------------------------------------------------------------- processing


def raw_process(url: str, n: int, k: int) -> float:
    """The baseline: claim k jobs with SKIP LOCKED and mark them done, one statement per batch."""
    with psycopg.connect(url, autocommit=True) as conn:
        def run() -> None:
            done = 0
            while done < n:
                cur = conn.execute(
                    "WITH picked AS (SELECT id FROM finejobs_jobs WHERE state = 'available' AND shard = 'default' "
                    "AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                    "UPDATE finejobs_jobs j SET state = 'succeeded', attempt = 1, finished_at = now() "
                    "FROM picked WHERE j.id = picked.id", (k,))
                if cur.rowcount == 0:
                    break
                done += cur.rowcount
        return _timed(run)


def bench_raw(url: str, n: int) -> dict[int, Row]:
    rows = {}
    for k in (1, 100):
        truncate(url)
        enqueue_bulk(url, n)
        rate = n / raw_process(url, n, k)
        rows[k] = Row("processing", f"raw SKIP LOCKED loop, k={k}", n, n / rate, "itself", rate)
    return rows


def _max_id(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM finejobs_jobs").fetchone()
        assert row is not None
        return int(row[0])


def _succeeded_span(url: str, n: int, timeout: float, *, after_id: int = 0,
                    procs: list[subprocess.Popen[bytes]] | None = None) -> float:
    """Wait until the n jobs after ``after_id`` succeeded; seconds from their common run_at to the last finish."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*), extract(epoch FROM max(finished_at) - min(run_at)) "
                               "FROM finejobs_jobs WHERE state = 'succeeded' AND id > %s", (after_id,)).fetchone()
            assert row is not None
            if row[0] >= n:
                return float(row[1])
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {row[0]} of {n} jobs succeeded in {timeout:.0f}s")
            dead = [p.returncode for p in procs or () if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker process exited early (exit {dead[0]}); its error is above")
            time.sleep(0.2)  # the figure comes from the rows' timestamps; polling only has to notice the end


def process_in_subprocesses(url: str, n: int, concurrency: int, processes: int, *, lead: float = 4.0,
                            keep_rows: bool = False, kind: str = "noop") -> float:
    """Worker processes (the real CLI) drain n no-op jobs of ``kind`` (sync ``noop`` or ``noop_async``);
    ``keep_rows`` leaves what the table holds."""
    if not keep_rows:
        truncate(url)
    after_id = _max_id(url)
    enqueue_bulk(url, n, run_at_in=lead, kind=kind)
    env = dict(os.environ, FINEJOBS_DATABASE_URL=url)
    procs = [
        subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", "bench.noop_app:queue",
                          "--concurrency", str(concurrency), "--poll-interval", "0.02", "--log-level", "WARNING"],
                         cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        return _succeeded_span(url, n, timeout=300, after_id=after_id, procs=procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def bench_processing(url: str, *, n: int, concurrencies: tuple[int, ...], process_counts: tuple[int, ...],
                     baseline: Row) -> list[Row]:
    rows = []
    for processes in process_counts:
        for concurrency in concurrencies:
            seconds = process_in_subprocesses(url, n, concurrency, processes)
            label = "1 worker process" if processes == 1 else f"{processes} worker processes"
            rows.append(Row("processing", f"no-op jobs, {label}, concurrency={concurrency}", n, seconds,
                            "raw loop k=100", baseline.baseline_rate, concurrency=concurrency, processes=processes))
    # An async handler beside the same sync one (1 process, the highest concurrency; the issue: within 20%).
    concurrency = max(concurrencies)
    sync = next(r for r in rows if r.concurrency == concurrency and r.processes == min(process_counts))
    seconds = process_in_subprocesses(url, n, concurrency, min(process_counts), kind="noop_async")
    rows.append(Row("processing", f"async no-op jobs, {min(process_counts)} worker process, concurrency={concurrency}",
                    n, seconds, "the sync handler, same settings", sync.rate))
    return rows
