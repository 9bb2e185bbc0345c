"""The crash suite of bench/crash.py on Citus: real worker processes (bench.crash_worker, the job table
distributed by shard) killed with SIGKILL mid-run; nothing lost, nothing run twice at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import bench.crash
from bench.crash import prepare_crash_database, run_crash_suite
from tests.integration.test_crash import check_crash_report

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

    check_crash_report(report, jobs=300, kills=4)
