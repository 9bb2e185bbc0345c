"""A 10k-job group whose workers are killed with SIGKILL mid-run: its counters count every member once and
each callback is enqueued exactly once (bench.group_crash; ``python -m bench.group_crash`` runs it alone)."""

from __future__ import annotations

from bench.group_crash import run_group_crash


def test_callbacks_of_a_10k_group_fire_exactly_once_while_workers_are_killed(server_url: str) -> None:
    report = run_group_crash(server_url, jobs=10_000, workers=3, kills=3, seed=20261201)

    assert report.ok, report.table()
    assert report.kills == 3
    assert report.rescued >= 1, "the kills must interrupt members mid-run:\n" + report.table()
    assert report.callback_jobs == {"complete": 1, "success": 1}
    assert report.counters["succeeded"] == 10_000
