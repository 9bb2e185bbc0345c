"""Scheduler at scale: many schedules due at one instant, against a raw INSERT ... SELECT of the same jobs.

A database holds ``total`` schedules (one INSERT ... SELECT generate_series), ``due`` of them due at one
instant T a few seconds ahead, the others an hour or more later. Real ``finejobs worker`` processes (1, then
2) are started and idle before T; the figure is the time from T until all ``due`` jobs exist (polled every
50 ms), so start-up never counts. The jobs are of a kind the workers do not serve: only the scheduler works.
The baseline, in the same run and database: one raw ``INSERT INTO finejobs_jobs ... SELECT ... FROM
finejobs_schedules WHERE next_fire_at <= T`` of the same jobs, alone and with the UPDATE that advances them.

The claim cost: no-op jobs drained by one worker process (bench.core) in a database with no schedule and in
one holding the ``total`` schedules (none due meanwhile), alternately, the best of ``repeats`` each.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

import finejobs
from bench.core import create_database, drop_database, process_in_subprocesses
from bench.shards import start_workers
from finejobs import Every

RULE = json.dumps(Every(hours=1).to_spec())


@dataclass
class SchedulesResult:
    total: int
    due: int
    workers: dict[int, float] = field(default_factory=dict)  # worker processes -> seconds until all jobs exist
    raw_insert: float = 0.0
    raw_insert_advance: float = 0.0
    claim_jobs: int = 0
    claim_without: float = 0.0  # seconds to drain claim_jobs, no schedules
    claim_with: float = 0.0  # ... beside ``total`` schedules
    due_plan: str = ""

    def rate(self, seconds: float) -> float:
        return self.due / seconds if seconds else float("inf")


def _log(message: str) -> None:
    print(f"schedules: {message}", file=sys.stderr, flush=True)


def fill(url: str, total: int) -> None:
    """``total`` schedules of a kind nobody serves, none due for an hour or more."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO finejobs_schedules (name, kind, rule, next_fire_at, misfire, expires_in) "
            "SELECT 'schedule-' || i, 'tick', %s::jsonb, now() + interval '1 hour' + i * interval '1 second', "
            "'skip', interval '1 hour' FROM generate_series(1, %s) AS i", (RULE, total))
        conn.execute("VACUUM ANALYZE finejobs_schedules")


def _make_due(conn: psycopg.Connection[tuple[object, ...]], due: int, lead: float) -> datetime:
    """The first ``due`` schedules come due at one instant ``lead`` seconds ahead; their old jobs are gone."""
    conn.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
    row = conn.execute("SELECT now() + %s * interval '1 second'", (lead,)).fetchone()
    assert row is not None
    at = row[0]
    assert isinstance(at, datetime)
    conn.execute("UPDATE finejobs_schedules SET next_fire_at = %s, runs = 0, fired = 0, skipped = 0, "
                 "last_job_id = NULL, last_fire_at = NULL WHERE id <= %s", (at, due))
    conn.execute("VACUUM ANALYZE finejobs_schedules")
    conn.execute("VACUUM ANALYZE finejobs_jobs")
    return at


def _jobs(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE schedule_id IS NOT NULL").fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def time_workers(url: str, due: int, processes: int, *, lead: float = 8.0, timeout: float = 300.0) -> float:
    """Seconds from the instant ``due`` schedules come due until all their jobs exist, ``processes`` workers."""
    workers = start_workers(url, [[]] * processes, concurrency=10)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            at = _make_due(conn, due, lead)
            if time.time() > at.timestamp():
                _log("the schedules were made due after their instant: the figure includes that delay")
            while _jobs(conn) < due:
                if time.time() > at.timestamp() + timeout:
                    raise TimeoutError(f"only {_jobs(conn)} of {due} jobs after {timeout:.0f}s")
                time.sleep(0.05)
            seconds = time.time() - at.timestamp()
            made = conn.execute("SELECT count(*), count(DISTINCT schedule_id) FROM finejobs_jobs").fetchone()
            skipped = conn.execute("SELECT sum(skipped) FROM finejobs_schedules").fetchone()
            assert made == (due, due) and skipped == (0,), f"jobs, their schedules: {made}; skipped: {skipped}"
    finally:
        workers.stop()
    return seconds


def time_raw(url: str, due: int, *, advance: bool) -> float:
    """The same jobs by one raw INSERT ... SELECT (and, with ``advance``, the UPDATE moving the schedules on)."""
    with psycopg.connect(url, autocommit=True) as setup:
        at = _make_due(setup, due, 0.0)
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        conn.execute(
            "INSERT INTO finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts, "
            "schedule_id, fire_at) SELECT kind, shard, payload, priority, next_fire_at, next_fire_at + expires_in, "
            "max_attempts, id, next_fire_at FROM finejobs_schedules WHERE NOT paused AND next_fire_at <= %s "
            "ON CONFLICT (shard, schedule_id, fire_at) WHERE schedule_id IS NOT NULL DO NOTHING", (at,))
        if advance:
            conn.execute("UPDATE finejobs_schedules SET next_fire_at = next_fire_at + interval '1 hour', "
                         "fired = fired + 1, runs = runs + 1, version = version + 1 "
                         "WHERE NOT paused AND next_fire_at <= %s", (at,))
        conn.commit()
        seconds = time.perf_counter() - start
        assert _jobs(conn) == due
    return seconds


def due_plan(url: str) -> str:
    """The plan of the scheduler's statement taking a batch (it must be a range of the due index)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "EXPLAIN SELECT s.* FROM finejobs_schedules s WHERE NOT s.paused AND s.next_fire_at <= now() "
            "AND s.id <> ALL(ARRAY[]::bigint[]) ORDER BY s.next_fire_at LIMIT 2000 FOR UPDATE OF s SKIP LOCKED"
        ).fetchall()
    return " / ".join(str(r[0]).strip() for r in rows)


def bench_schedules(server_url: str, *, total: int, due: int, process_counts: tuple[int, ...] = (1, 2),
                    claim_jobs: int = 20_000, repeats: int = 3, lead: float = 8.0) -> SchedulesResult:
    result = SchedulesResult(total=total, due=due, claim_jobs=claim_jobs)
    big = create_database(server_url)
    empty = create_database(server_url)
    try:
        _log(f"filling {total:,} schedules")
        fill(big, total)
        result.due_plan = due_plan(big)
        result.raw_insert = time_raw(big, due, advance=False)
        result.raw_insert_advance = time_raw(big, due, advance=True)
        for processes in process_counts:
            result.workers[processes] = time_workers(big, due, processes, lead=lead)
            _log(f"{processes} worker process(es): {result.workers[processes]:.2f}s")
        with psycopg.connect(big, autocommit=True) as conn:  # none due while the claim is timed
            conn.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
            conn.execute("UPDATE finejobs_schedules SET next_fire_at = now() + interval '1 hour' WHERE id <= %s",
                         (due,))
            conn.execute("VACUUM ANALYZE finejobs_schedules")
        without, with_ = [], []
        for _ in range(repeats):
            without.append(process_in_subprocesses(empty, claim_jobs, 10, 1))
            with_.append(process_in_subprocesses(big, claim_jobs, 10, 1))
        result.claim_without, result.claim_with = min(without), min(with_)
    finally:
        drop_database(server_url, big)
        drop_database(server_url, empty)
    return result


def schedules_markdown(r: SchedulesResult) -> str:
    lines = [f"### Scheduler: {r.due:,} schedules due at one instant among {r.total:,}", "",
             "| run | seconds until all jobs exist | ticks/s | vs raw INSERT ... SELECT | vs raw INSERT + UPDATE |",
             "|---|---:|---:|---:|---:|"]
    raw, raw_adv = r.rate(r.raw_insert), r.rate(r.raw_insert_advance)
    lines.append(f"| raw INSERT ... SELECT (baseline) | {r.raw_insert:.2f} | {raw:,.0f} | 1.00 | |")
    lines.append(f"| raw INSERT ... SELECT + UPDATE next_fire_at | {r.raw_insert_advance:.2f} | {raw_adv:,.0f} | "
                 f"{raw_adv / raw:.2f} | 1.00 |")
    for processes, seconds in r.workers.items():
        label = "1 worker process" if processes == 1 else f"{processes} worker processes"
        rate = r.rate(seconds)
        lines.append(f"| finejobs, {label} | {seconds:.2f} | {rate:,.0f} | {rate / raw:.2f} | {rate / raw_adv:.2f} |")
    slower = (r.claim_with / r.claim_without - 1) * 100 if r.claim_without else float("nan")
    lines += ["", f"Job claim ({r.claim_jobs:,} no-op jobs, 1 worker process, concurrency 10, best of runs): "
              f"{r.claim_jobs / r.claim_without:,.0f} jobs/s with no schedule, {r.claim_jobs / r.claim_with:,.0f} "
              f"jobs/s beside {r.total:,} schedules ({slower:+.1f}% time; the limit is +10%).", "",
              f"Due batch plan: {r.due_plan}"]
    return "\n".join(lines)


def write_schedules_json(path: object, title: str, r: SchedulesResult) -> None:
    from pathlib import Path

    out = Path(str(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "title": title, "total": r.total, "due": r.due, "workers": {str(k): v for k, v in r.workers.items()},
        "raw_insert": r.raw_insert, "raw_insert_advance": r.raw_insert_advance, "claim_jobs": r.claim_jobs,
        "claim_without": r.claim_without, "claim_with": r.claim_with, "due_plan": r.due_plan,
        "measured_at": finejobs.clock.utcnow().isoformat(),
    }, indent=2) + "\n")

