"""The crash suite of bench/crash.py on Citus: real worker processes (bench.crash_worker, the job table
distributed by shard) killed with SIGKILL mid-run; nothing lost, nothing run twice at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import bench.crash
from bench.crash import prepare_crash_database, run_crash_suite

from .conftest import create_citus_database, drop_citus_database


@contextmanager
def _citus_crash_database(server_url: str, *, keep: bool = False) -> Iterator[str]:
    """bench.crash's crash_database, on a new database of the Citus cluster (crash_events stays a coordinator
    table: the workers write their events there)."""
    url = create_citus_database(prefix="finejobs_citus_crash")
    try:
        prepare_crash_database(url)
        yield url
    finally:
        if not keep:
            drop_citus_database(url)


def test_killed_workers_lose_no_job_and_no_job_runs_twice_at_once_on_citus(
        citus_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.crash, "crash_database", _citus_crash_database)
    report = run_crash_suite(citus_url, jobs=300, workers=3, kills=4, seed=20261201)

    assert report.ok, report.table()
    assert (report.jobs, report.kills, report.restarts) == (300, 4, 4)
    assert (report.lost, report.overlapping_runs, report.left_running, report.attempt_mismatches) == (0, 0, 0, 0)
    assert report.states == {"succeeded": 300}
    assert report.killed_mid_handler >= 1, "the kills must hit workers while they run handlers"
    assert report.lease_expired == report.starts - report.jobs + report.claimed_never_started
