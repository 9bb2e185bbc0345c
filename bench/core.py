"""Core benchmarks: enqueue (one by one, bulk) and no-op processing, each beside a raw-SQL baseline.

Every figure is measured in the same run, on the same database, as a minimal psycopg baseline, and
printed as a ratio of it: absolute numbers drift on a shared machine, ratios hold.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql
from pydantic import BaseModel

import finejobs
from finejobs.store import libpq_url


class Noop(BaseModel):
    n: int


@dataclass(frozen=True)
class Row:
    name: str
    jobs: int
    seconds: float
    baseline: str
    baseline_rate: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else float("inf")

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate if self.baseline_rate else float("nan")


def bench_database(server_url: str) -> str:
    name = f"finejobs_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return libpq_url(server_url).rsplit("/", 1)[0] + "/" + name


def drop_database(server_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
        conn.execute("VACUUM ANALYZE finejobs_jobs")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_insert_one_by_one(url: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        def run() -> None:
            for i in range(n):
                conn.execute("INSERT INTO finejobs_jobs (kind, payload) VALUES ('noop', %s::jsonb)",
                             (json.dumps({"n": i}),))
        return _timed(run)


def raw_insert_bulk(url: str, n: int, batch: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        def run() -> None:
            for start in range(0, n, batch):
                payloads = [json.dumps({"n": i}) for i in range(start, min(n, start + batch))]
                conn.execute("INSERT INTO finejobs_jobs (kind, payload) "
                             "SELECT 'noop', p FROM unnest(%s::jsonb[]) AS p", (payloads,))
        return _timed(run)


def raw_process(url: str, n: int, k: int) -> float:
    """The baseline worker: claim k jobs with SKIP LOCKED and mark them done, one statement per batch."""
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


def _queue(url: str) -> tuple[finejobs.Queue, finejobs.JobKind[[Noop], None]]:
    queue = finejobs.Queue(url)

    @queue.job("noop", retry=finejobs.Retry(max_attempts=1))
    def noop(payload: Noop) -> None:
        return None

    return queue, noop


def finejobs_enqueue_one_by_one(url: str, n: int) -> float:
    queue, noop = _queue(url)
    seconds = _timed(lambda: [noop.enqueue(Noop(n=i)) for i in range(n)])
    queue.close()
    return seconds


def finejobs_enqueue_bulk(url: str, n: int, batch: int) -> float:
    queue, noop = _queue(url)

    def run() -> None:
        for start in range(0, n, batch):
            noop.enqueue_many([Noop(n=i) for i in range(start, min(n, start + batch))])

    seconds = _timed(run)
    queue.close()
    return seconds


def finejobs_process(url: str, n: int, concurrency: int) -> float:
    """One worker (threads in this process) drains n no-op jobs; timed from start until all succeeded."""
    queue, noop = _queue(url)
    for start in range(0, n, 5000):
        noop.enqueue_many([Noop(n=i) for i in range(start, min(n, start + 5000))])
    worker = queue.worker(concurrency=concurrency, poll_interval=0.05, claim_batch=concurrency)
    started = time.perf_counter()
    worker.start()
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE state = 'succeeded'").fetchone()
            if row is not None and row[0] >= n:
                break
            time.sleep(0.01)
    seconds = time.perf_counter() - started
    worker.stop()
    queue.close()
    return seconds


def run_core(server_url: str, *, n_single: int, n_bulk: int, n_process: int,
             concurrencies: tuple[int, ...]) -> list[Row]:
    url = bench_database(server_url)
    finejobs.Queue(url).migrate()
    rows: list[Row] = []
    try:
        _truncate(url)
        raw_single = raw_insert_one_by_one(url, n_single)
        _truncate(url)
        fj_single = finejobs_enqueue_one_by_one(url, n_single)
        rows.append(Row("enqueue one by one", n_single, fj_single, "raw INSERT per row", n_single / raw_single))

        _truncate(url)
        raw_bulk = raw_insert_bulk(url, n_bulk, 5000)
        _truncate(url)
        fj_bulk = finejobs_enqueue_bulk(url, n_bulk, 5000)
        rows.append(Row("enqueue_many (5,000 per call)", n_bulk, fj_bulk, "raw INSERT ... unnest",
                        n_bulk / raw_bulk))

        for k in (1, 100):
            _truncate(url)
            finejobs_enqueue_bulk(url, n_process, 5000)
            raw_rate = n_process / raw_process(url, n_process, k)
            rows.append(Row(f"raw SKIP LOCKED loop, k={k}", n_process, n_process / raw_rate, "itself", raw_rate))
        baseline = rows[-1].baseline_rate
        for concurrency in concurrencies:
            _truncate(url)
            seconds = finejobs_process(url, n_process, concurrency)
            rows.append(Row(f"worker, 1 process, concurrency={concurrency}", n_process, seconds,
                            "raw loop k=100", baseline))
    finally:
        drop_database(server_url, url)
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        f"finejobs {finejobs.__version__}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "| measurement | jobs | seconds | jobs/s | baseline | baseline jobs/s | ratio |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {r.jobs:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.baseline} | "
                     f"{r.baseline_rate:,.0f} | {r.ratio:.0%} |")
    return "\n".join(lines)
