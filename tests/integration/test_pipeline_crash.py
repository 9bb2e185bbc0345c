"""A pipeline survives SIGKILL: real worker processes killed while they run its steps' handlers (the reduction's
included) during a 3-step run with a reduction (bench.pipeline_crash). Every chunk is committed once, the
reduction's committed result counts every item once, and there is exactly one reduction job."""

from __future__ import annotations

from bench.pipeline_crash import run_pipeline_crash  # bench/ is on the path: pyproject's pythonpath


def test_killed_workers_leave_every_chunk_committed_once_and_one_reduction_result(server_url: str) -> None:
    report = run_pipeline_crash(server_url, items=2400, workers=3, kills=4, seed=20261201)

    assert report.ok, report.table()
    assert report.state == "succeeded"
    assert report.result == {"files": 48, "items": 4800, "distinct": 4800}
    assert report.reduce_jobs == 1
    assert report.kills >= 3, report.table()
    # The last kill hit the reduction while it ran: it ran again (at-least-once), its result was committed once.
    assert report.handler_starts["reduce"] >= 2, report.table()
    assert report.handler_starts["expand"] >= 24 and report.handler_starts["write"] >= 48
    assert report.handler_starts["expand"] + report.handler_starts["write"] > 72, "killed handlers ran again"
    assert report.elapsed < 30, report.table()
