"""Bulk import (finejobs.importing.import_jobs, COPY) against raw COPYs of the same rows, in one run.

Every measurement reads the same N claim-like items from the same generator (made lazily: none of them
holds the items in memory) and writes the same column values: kind, shard, payload (JSON), priority,
run_at, expires_at, max_attempts, created_at, group_id. The baselines:

- raw COPY into a plain table: the same columns, no index, no constraint, no partition (the issue's
  baseline), in psycopg's binary format (and once in its text format, to show which format wins);
- raw COPY into the job table itself: the same rows without finejobs' validation (what the job table's
  indexes, constraints and partition routing cost on their own).

finejobs' rows: ``import_jobs`` (every item validated as enqueue validates it, then COPY), and
``enqueue_many`` in batches of 10,000 for comparison. The table is truncated and a CHECKPOINT taken before
each run. ``client CPU`` is this process's CPU time (time.process_time): it tells Python's share from the
server's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel

import finejobs
from bench.core import create_database, drop_database
from finejobs.importing import import_jobs
from finejobs.store import libpq_url
from finejobs.store.bulk import _JsonTextBinaryDumper

TARGET = 0.80
ENQUEUE_BATCH = 10_000
COLUMNS = "kind, shard, payload, priority, run_at, expires_at, max_attempts, created_at, group_id"
TYPES = ["text", "text", "jsonb", "int2", "timestamptz", "timestamptz", "int4", "timestamptz", "int8"]
PLAIN = """CREATE TABLE bench_plain (kind text, shard text, payload jsonb, priority smallint, run_at timestamptz,
                                       expires_at timestamptz, max_attempts integer, created_at timestamptz,
                                       group_id bigint)"""


class Claim(BaseModel):
    claim_id: str
    insuree: str
    amount: float
    service_date: str
    facility: str


def claims(n: int) -> Iterator[dict[str, Any]]:
    """N insurance-claim payloads, made one at a time (the same for every measurement)."""
    for i in range(n):
        yield {"claim_id": f"C{i:09d}", "insuree": f"INS{i % 250_000:07d}",
               "amount": round((i * 37) % 500_000 / 100, 2), "service_date": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
               "facility": f"FAC{i % 800:04d}"}


@dataclass(frozen=True)
class ImportRow:
    name: str
    jobs: int
    seconds: float
    cpu_seconds: float
    baseline: bool = False

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else float("inf")


@dataclass(frozen=True)
class ImportsResult:
    n: int
    rows: tuple[ImportRow, ...]
    plain: str  # the name of the plain-table baseline row
    job_table: str  # the name of the job-table baseline row


def _queue(url: str) -> tuple[finejobs.Queue, finejobs.JobKind[[Claim], None]]:
    queue = finejobs.Queue(url)

    @queue.job("claim.review", retry=finejobs.Retry(max_attempts=3))
    def review(claim: Claim) -> None:
        return None

    return queue, review


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
        conn.execute("TRUNCATE bench_plain")
        conn.execute("CHECKPOINT")


def _timed(name: str, n: int, fn: Callable[[], object], *, baseline: bool = False) -> ImportRow:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return ImportRow(name, n, time.perf_counter() - start, time.process_time() - cpu, baseline)


def raw_copy(url: str, n: int, table: str, *, binary: bool = True) -> None:
    """A raw COPY of the same rows: json.dumps each payload, write_row; one transaction."""
    now = datetime.now(UTC)
    dumps = json.dumps
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.adapters.register_dumper(None, _JsonTextBinaryDumper)
        fmt = " (FORMAT BINARY)" if binary else ""
        with cur.copy(f"COPY {table} ({COLUMNS}) FROM STDIN{fmt}") as copy:
            if binary:
                copy.set_types(TYPES)
            write = copy.write_row
            for item in claims(n):
                write(("claim.review", "default", dumps(item, separators=(",", ":")), 0, now, None, 3, now, None))


def finejobs_import(url: str, n: int) -> None:
    queue, review = _queue(url)
    try:
        result = import_jobs(queue, review, claims(n))
        assert result.count == n
    finally:
        queue.close()


def finejobs_enqueue_many(url: str, n: int) -> None:
    queue, review = _queue(url)
    try:
        batch: list[dict[str, Any]] = []
        for item in claims(n):
            batch.append(item)
            if len(batch) == ENQUEUE_BATCH:
                review.enqueue_many(batch)
                batch = []
        if batch:
            review.enqueue_many(batch)
    finally:
        queue.close()


def bench_imports(server_url: str, *, n: int) -> ImportsResult:
    url = libpq_url(create_database(server_url))
    plain = "raw COPY into a plain table (binary; no index, no constraint)"
    job_table = "raw COPY into the job table (binary; its indexes, constraints, partitions)"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PLAIN)
        runs: list[tuple[str, Callable[[], object], bool]] = [
            (plain, lambda: raw_copy(url, n, "bench_plain"), True),
            ("raw COPY into a plain table (text format)", lambda: raw_copy(url, n, "bench_plain", binary=False), True),
            (job_table, lambda: raw_copy(url, n, "finejobs_jobs"), True),
            ("import_jobs (validated, COPY binary)", lambda: finejobs_import(url, n), False),
            (f"enqueue_many ({ENQUEUE_BATCH:,} per call)", lambda: finejobs_enqueue_many(url, n), False),
        ]
        rows = []
        for name, fn, baseline in runs:
            _reset(url)
            rows.append(_timed(name, n, fn, baseline=baseline))
        with psycopg.connect(url, autocommit=True) as conn:  # the last run's rows are all there
            found = conn.execute("SELECT count(*) FROM finejobs_jobs").fetchone()
            assert found is not None and found[0] == n, found
    finally:
        drop_database(server_url, url)
    return ImportsResult(n, tuple(rows), plain, job_table)


def imports_markdown(result: ImportsResult) -> str:
    by_name = {r.name: r for r in result.rows}
    plain, table = by_name[result.plain], by_name[result.job_table]
    lines = [
        f"Bulk import: {result.n:,} claim jobs (5-field payload), one run each, table truncated and checkpointed "
        "before each; the plain table has the same columns and no index, constraint or partition",
        "",
        "| measurement | jobs | seconds | jobs/s | client CPU s | vs raw COPY, plain table | vs raw COPY, job table |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result.rows:
        lines.append(f"| {r.name} | {r.jobs:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.cpu_seconds:.2f} | "
                     f"{r.rate / plain.rate:.0%} | {r.rate / table.rate:.0%} |")
    mine = by_name["import_jobs (validated, COPY binary)"]
    smoke = " (a --quick size: a smoke test, not a measurement)" if result.n < 1_000_000 else ""
    verdict = "met" if mine.rate >= TARGET * plain.rate else "not met"
    lines += ["", f"Target{smoke}: import_jobs at >= {TARGET:.0%} of a raw COPY into a plain table: {verdict} "
              f"({mine.rate / plain.rate:.0%}); against a raw COPY of the same rows into the job table itself: "
              f"{mine.rate / table.rate:.0%}."]
    return "\n".join(lines)


def write_imports_json(path: Path, title: str, result: ImportsResult) -> None:
    by_name = {r.name: r for r in result.rows}
    plain, table = by_name[result.plain], by_name[result.job_table]
    doc = {"title": title, "n": result.n, "target": TARGET,
           "rows": [asdict(r) | {"rate": r.rate, "vs_plain": r.rate / plain.rate, "vs_job_table": r.rate / table.rate}
                    for r in result.rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))

