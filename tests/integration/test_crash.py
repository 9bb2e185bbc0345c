"""Nothing lost, nothing run twice at once: real worker processes killed with SIGKILL mid-run (bench.crash).

The CI run is small (300 jobs, 3 workers, 4 kills); ``python -m bench.crash`` runs a larger one. The checks
the suite makes on its records are tested here too, on made-up records, so that a checker that misses
an overlap or a miscounted attempt fails loudly instead of passing everything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.crash import CrashReport, check_job, run_crash_suite  # bench/ is on the path: pyproject's pythonpath
from finejobs import JobKind, JobState, Queue
from finejobs.testing import FakeClock

T = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
KILLED = {10: T + timedelta(seconds=5)}  # pid 10 was killed at T+5s


def check_crash_report(report: CrashReport, *, jobs: int, kills: int) -> None:
    """What a crash run must show, here and on Citus (tests/citus/test_citus_crash.py)."""
    assert report.ok, report.table()
    assert (report.jobs, report.kills, report.restarts) == (jobs, kills, kills)
    assert (report.lost, report.overlapping_runs, report.left_running, report.attempt_mismatches) == (0, 0, 0, 0)
    assert report.states == {"succeeded": jobs}
    assert report.killed_mid_handler >= 1, "the kills must hit workers while they run handlers"
    # Every attempt but each job's last one ended by a kill, and each is recorded as LeaseExpired: those that
    # started (killed mid-handler, or finished but killed before the outcome was written) and those claimed
    # by a worker killed before the handler began.
    assert report.lease_expired == report.starts - report.jobs + report.claimed_never_started


def test_killed_workers_lose_no_job_and_no_job_runs_twice_at_once(server_url: str) -> None:
    report = run_crash_suite(server_url, jobs=300, workers=3, kills=4, seed=20261122)

    check_crash_report(report, jobs=300, kills=4)
    assert report.elapsed < 40, report.table()


# ---------------------------------------------------------------- the checker, on made-up records


def _report() -> CrashReport:
    return CrashReport(jobs=1, workers=1, kills=1, restarts=1, lost=0, overlapping_runs=0,
                       duplicated_completions=0, elapsed=0.0)


def _at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def _lease_expired(attempt: int, pid: int) -> dict[str, Any]:
    return {"attempt": attempt, "error": "LeaseExpired", "worker": f"host:{pid}:abc123", "message": "..."}


def _check(attempt: int, errors: list[dict[str, Any]], events: list[tuple[int, int, str, float]],
           state: str = "succeeded") -> tuple[int, CrashReport]:
    report = _report()
    records = [(a, pid, event, _at(at), False) for a, pid, event, at in events]
    overlaps = check_job(1, state, attempt, errors, records, KILLED, _at(100), report)
    return overlaps, report


def test_checker_accepts_a_run_killed_mid_handler_and_started_again_after_the_kill() -> None:
    overlaps, report = _check(2, [_lease_expired(1, 10)], [(1, 10, "start", 1), (2, 11, "start", 6),
                                                            (2, 11, "finish", 7)])
    assert (overlaps, report.problems) == (0, [])
    assert (report.starts, report.killed_mid_handler, report.claimed_never_started) == (2, 1, 0)


def test_checker_finds_a_start_before_the_killed_run_ended() -> None:
    overlaps, report = _check(2, [_lease_expired(1, 10)], [(1, 10, "start", 1), (2, 11, "start", 4),
                                                            (2, 11, "finish", 7)])
    assert overlaps == 1
    assert "started at" in report.problems[0]


def test_checker_finds_a_live_worker_that_lost_its_lease_and_overlapped() -> None:
    overlaps, report = _check(2, [_lease_expired(1, 12)], [(1, 12, "start", 1), (2, 11, "start", 3),
                                                            (1, 12, "finish", 5), (2, 11, "finish", 6)])
    assert overlaps == 1
    assert any("which was never killed" in p for p in report.problems)


def test_checker_counts_attempts_claimed_by_a_killed_worker_that_never_started() -> None:
    overlaps, report = _check(2, [_lease_expired(1, 10)], [(2, 11, "start", 6), (2, 11, "finish", 7)])
    assert (overlaps, report.problems, report.claimed_never_started) == (0, [], 1)


def test_checker_finds_attempts_that_do_not_match_the_records() -> None:
    _, report = _check(3, [], [(3, 11, "start", 6), (3, 11, "finish", 7)])
    assert report.attempt_mismatches == 1
    assert any("neither started nor lost a lease" in p for p in report.problems)


def test_checker_finds_one_attempt_started_twice() -> None:
    _, report = _check(1, [], [(1, 11, "start", 1), (1, 11, "finish", 2), (1, 13, "start", 3),
                               (1, 13, "finish", 4)])
    assert any("attempt 1 started 2 times" in p for p in report.problems)


def test_checker_counts_a_duplicated_completion_without_calling_it_an_error() -> None:
    # Finished, then killed before the outcome was written: the job ran again (at-least-once).
    overlaps, report = _check(2, [_lease_expired(1, 10)], [(1, 10, "start", 1), (1, 10, "finish", 2),
                                                            (2, 11, "start", 6), (2, 11, "finish", 7)])
    assert (overlaps, report.problems, report.duplicated_completions) == (0, [], 1)


def test_checker_finds_a_succeeded_job_whose_last_attempt_never_finished() -> None:
    _, report = _check(1, [], [(1, 11, "start", 1)])
    assert any("never finished" in p for p in report.problems)
    assert any("no complete start/finish" in p for p in report.problems)


# ---------------------------------------------------------------- a bug found while writing the suite (fixed)


def test_a_stale_run_finishing_does_not_drop_the_lease_of_the_next_claim_of_its_job(
    queue: Queue, clock: FakeClock
) -> None:
    @queue.job("crash.lease")
    def handler(payload: dict[str, Any]) -> None:
        pass

    assert isinstance(handler, JobKind)
    job = handler.enqueue({})
    lease = timedelta(seconds=30)
    worker = queue.worker(listen=False, lease=lease, concurrency=2, worker_id="w1")
    # Claimed and started; then this live worker loses the lease (a pause, a database hiccup).
    (first,) = worker._claim(1)
    old_run = worker._launch_record(first)
    assert old_run is not None
    clock.advance(lease + timedelta(seconds=1))
    assert queue.store.job_rescue_expired_leases(now=clock()) == {job.id: JobState.AVAILABLE}
    assert worker.heartbeat.run_once(clock()) == {job.id}  # noticed: the old run's outcome will be ignored
    # The same worker claims the job again while the old handler is still running.
    (second,) = worker._claim(1)
    new_run = worker._launch_record(second)
    assert new_run is not None and second.attempt == 2
    # The old handler returns; its outcome is rightly discarded by the fencing guard.
    worker._execute(old_run)
    worker.completer.run_once(clock())
    assert worker.stats["discarded"] == 1

    assert worker.held() == {job.id: 2}, "the new claim must still be held (and heartbeated)"
    clock.advance(timedelta(seconds=20))
    worker.heartbeat.run_once(clock())
    clock.advance(timedelta(seconds=11))
    assert queue.store.job_rescue_expired_leases(now=clock()) == {}
    assert queue.get(job.id).state is JobState.RUNNING
