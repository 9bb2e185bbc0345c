"""Processing with millions of finished and future-scheduled rows in the table vs an empty table."""

from __future__ import annotations

import psycopg

from bench.core import Row, process_in_subprocesses, truncate


def fill(url: str, *, finished: int, scheduled: int) -> None:
    """Rows as a busy production table has them: finished (kept for retention) and scheduled for later."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO finejobs_jobs (kind, payload, state, attempt, started_at, finished_at) "
            "SELECT 'noop', jsonb_build_object('n', g), 'succeeded', 1, now(), now() "
            "FROM generate_series(1, %s) g", (finished,))
        conn.execute(
            "INSERT INTO finejobs_jobs (kind, payload, run_at) "
            "SELECT 'noop', jsonb_build_object('n', g), now() + interval '1 day' "
            "FROM generate_series(1, %s) g", (scheduled,))
        # Settle what a long-lived table has settled: hint bits set, statistics fresh, dirty pages written.
        # Without this the run measures the aftermath of a 2M-row insert, not a big table.
        conn.execute("VACUUM (FREEZE, ANALYZE) finejobs_jobs")
        conn.execute("CHECKPOINT")


def bench_big_table(url: str, *, n: int, concurrency: int, finished: int, scheduled: int) -> list[Row]:
    empty = process_in_subprocesses(url, n, concurrency, 1)
    truncate(url)
    fill(url, finished=finished, scheduled=scheduled)
    full = process_in_subprocesses(url, n, concurrency, 1, keep_rows=True)
    label = f"{finished / 1e6:g}M finished + {scheduled / 1e6:g}M scheduled rows"
    return [
        Row("big table", f"no-op jobs, empty table, concurrency={concurrency}", n, empty, "itself", n / empty,
            concurrency=concurrency, processes=1),
        Row("big table", f"no-op jobs, {label}, concurrency={concurrency}", n, full, "empty table", n / empty,
            concurrency=concurrency, processes=1),
    ]
