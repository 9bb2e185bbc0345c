"""python -m bench.group_crash: a group's callbacks fire exactly once while its workers are killed.

Worker processes (``bench.crash_worker``, a 2 s lease) run the members of one group of N jobs; the driver
kills workers with SIGKILL while they work, starting a new one for each, then waits for the group to
finish. The report counts: members that succeeded (all N, each counted once in the group's counters),
callback jobs enqueued per event (exactly one each: on_complete and on_success), and callback runs (at
least one each; a kill that hits a callback's handler could run it again, as any job).
"""

from __future__ import annotations

import argparse
import random
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.crash import _busy_pids, _db_now, _Fleet, crash_database
from bench.crash_app import CALLBACK_KIND, MEMBER_KIND, Work, make_queue
from finejobs import Callback
from finejobs.store import libpq_url


@dataclass
class GroupCrashReport:
    jobs: int
    kills: int = 0
    members: dict[str, int] = field(default_factory=dict)  # member jobs by state
    counters: dict[str, int] = field(default_factory=dict)  # the group row's counters
    group_state: str = ""
    callback_jobs: dict[str, int] = field(default_factory=dict)  # per event: jobs enqueued
    callback_runs: dict[str, int] = field(default_factory=dict)  # per event: handler runs recorded
    rescued: int = 0  # members whose attempt a kill interrupted (a LeaseExpired is recorded on them)
    elapsed: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        lines = [f"group of {self.jobs} jobs, {self.kills} SIGKILLs, {self.elapsed:.1f} s: group {self.group_state}",
                 f"members by state: {self.members}", f"group counters: {self.counters}",
                 f"members interrupted by a kill and rescued: {self.rescued}",
                 f"callback jobs enqueued: {self.callback_jobs}", f"callback runs: {self.callback_runs}"]
        return "\n".join(lines + [f"- {p}" for p in self.problems])


def run_group_crash(server_url: str, *, jobs: int = 10_000, workers: int = 3, kills: int = 4, seed: int = 1,
                    drain_timeout: float = 120.0) -> GroupCrashReport:
    rng = random.Random(seed)
    report = GroupCrashReport(jobs=jobs)
    with crash_database(server_url) as url:
        fleet = _Fleet(url, Path(tempfile.mkdtemp(prefix="finejobs-group-crash-")), concurrency=8, lease=2.0,
                       maintenance_interval=0.2)
        q = make_queue(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            try:
                t0 = time.monotonic()
                fleet.wait_started([fleet.start() for _ in range(workers)])
                group = q.group("crash-group",
                                on_complete=Callback(CALLBACK_KIND, {"group": "crash-group", "event": "complete"}),
                                on_success=Callback(CALLBACK_KIND, {"group": "crash-group", "event": "success"}),
                                on_failure=Callback(CALLBACK_KIND, {"group": "crash-group", "event": "failure"}))
                with group:
                    for i in range(0, jobs, 2_000):
                        group.enqueue_many(MEMBER_KIND, [Work(n=n, sleep_ms=rng.randint(0, 2))
                                                         for n in range(i, min(jobs, i + 2_000))])
                for _ in range(kills):
                    time.sleep(rng.uniform(0.3, 0.8))
                    alive = fleet.alive()
                    busy = [p for p in alive if p.pid in _busy_pids(conn)] or alive
                    victim = rng.choice(busy)
                    victim.popen.send_signal(signal.SIGKILL)
                    victim.popen.wait(10)
                    victim.killed_at = _db_now(conn)
                    report.kills += 1
                    fleet.start()
                deadline = time.monotonic() + drain_timeout
                while time.monotonic() < deadline and not _settled(conn):
                    time.sleep(0.1)
                report.elapsed = time.monotonic() - t0
            finally:
                fleet.kill_all()
                q.close()
            _analyse(conn, report)
    return report


def _settled(conn: psycopg.Connection[Any]) -> bool:
    """The group finished and no job (member or callback) is left unfinished."""
    row = conn.execute("SELECT finished_at IS NOT NULL FROM finejobs_groups WHERE name = 'crash-group'").fetchone()
    left = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE state IN ('available', 'running')").fetchone()
    return bool(row and row[0]) and left is not None and left[0] == 0


def _analyse(conn: psycopg.Connection[Any], report: GroupCrashReport) -> None:
    row = conn.execute("SELECT id, total, succeeded, failed, expired, cancelled, outcome FROM finejobs_groups "
                       "WHERE name = 'crash-group'").fetchone()
    assert row is not None
    gid, *counts, outcome = row
    report.counters = dict(zip(("total", "succeeded", "failed", "expired", "cancelled"), counts, strict=True))
    report.group_state = str(outcome or "unfinished")
    report.members = dict(conn.execute("SELECT state, count(*) FROM finejobs_jobs WHERE kind = %s GROUP BY 1",
                                       (MEMBER_KIND,)).fetchall())
    report.callback_jobs = dict(conn.execute(
        "SELECT payload->>'event', count(*) FROM finejobs_jobs WHERE kind = %s GROUP BY 1", (CALLBACK_KIND,)))
    report.callback_runs = dict(conn.execute('SELECT event, count(*) FROM crash_callbacks GROUP BY 1').fetchall())
    rescued = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE kind = %s AND errors @> %s",
                           (MEMBER_KIND, '[{"error": "LeaseExpired"}]')).fetchone()
    report.rescued = int(rescued[0]) if rescued else 0
    keys = [k for (k,) in conn.execute("SELECT unique_key FROM finejobs_jobs WHERE kind = %s ORDER BY 1",
                                       (CALLBACK_KIND,))]
    if report.members != {"succeeded": report.jobs}:
        report.problems.append(f"members did not all succeed: {report.members}")
    if report.counters != {"total": report.jobs, "succeeded": report.jobs, "failed": 0, "expired": 0,
                           "cancelled": 0}:
        report.problems.append(f"the group's counters do not count each member once: {report.counters}")
    if report.group_state != "succeeded":
        report.problems.append(f"the group is {report.group_state}")
    if report.callback_jobs != {"complete": 1, "success": 1}:
        report.problems.append(f"callback jobs enqueued: {report.callback_jobs} (want one complete, one success)")
    if keys != [f"finejobs:group:{gid}:complete", f"finejobs:group:{gid}:success"]:
        report.problems.append(f"callback unique keys: {keys}")
    if set(report.callback_runs) != {"complete", "success"} or min(report.callback_runs.values()) < 1:
        report.problems.append(f"callback runs: {report.callback_runs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.group_crash", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--server", default=None, help="server URL (default: as the test suite finds one)")
    args = parser.parse_args(argv)
    from finejobs import devdb

    server = args.server or devdb.discover_server_url()
    report = run_group_crash(server, jobs=args.jobs, workers=args.workers, kills=args.kills, seed=args.seed)
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
