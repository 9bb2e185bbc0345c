"""The crash suite: real worker processes, killed with SIGKILL mid-run, lose nothing and never run a job twice at once.

``run_crash_suite`` creates a database of its own on the server, starts ``workers`` worker processes
(``python -m bench.crash_worker``: the ``bench.crash_app`` queue, a 2 s lease kept alive by the heartbeat),
enqueues ``jobs`` jobs due over a spread of a few seconds, and meanwhile kills ``kills`` workers with
SIGKILL (each chosen among those with a handler running at that moment) and starts a replacement for each.
When the survivors have drained everything (the killed workers' leases ran out and were rescued), they are
stopped with SIGTERM and the records are checked:

- every enqueued job is still there and in a final state, and none is left ``running`` or leased;
- every job succeeded (the handler never fails; ``MAX_ATTEMPTS`` covers any number of kills), and its last
  attempt has a complete start/finish pair;
- no job ever ran twice at the same time: per job, the runs ``[start, finish]`` do not overlap, where a run
  whose worker was killed before it finished lasts until the kill (read from the database clock once the
  process is reaped);
- the attempt counts match the records: attempt == recorded starts + attempts claimed by a killed worker
  that never reached the handler; every attempt but the last, and every start without a finish, is recorded
  as ``LeaseExpired`` in the job's errors, and only ever with the id of a worker that was killed (a live
  worker never lost a lease); no attempt number started twice.

Duplicated completions (a handler finished, then its worker was killed before the outcome was written, so
the job ran again) are reported: they are what at-least-once means, not an error.

    python -m bench.crash [--jobs 5000 --workers 4 --kills 20 --seed 1]
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.crash_app import EVENTS_DDL, KIND, Work, make_queue
from finejobs import JobSpec, devdb
from finejobs.store import libpq_url

REPO_ROOT = Path(__file__).resolve().parents[1]
FINAL = ("succeeded", "failed", "expired", "cancelled")


@dataclass
class CrashReport:
    """What a crash-suite run did and found. ``ok`` is True when ``problems`` is empty."""

    jobs: int
    workers: int
    kills: int
    restarts: int
    lost: int
    overlapping_runs: int
    duplicated_completions: int
    elapsed: float
    states: dict[str, int] = field(default_factory=dict)
    starts: int = 0
    killed_mid_handler: int = 0
    claimed_never_started: int = 0
    lease_expired: int = 0
    attempt_mismatches: int = 0
    left_running: int = 0
    discarded_outcomes: int = 0
    unexpected_exits: int = 0
    seed: int = 0
    command: str = ""
    problems: list[str] = field(default_factory=list)
    log_dir: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [
            ("jobs", self.jobs), ("workers at once", self.workers), ("kills (SIGKILL)", self.kills),
            ("restarts", self.restarts), ("lost", self.lost), ("overlapping runs", self.overlapping_runs),
            ("left running", self.left_running), ("attempt mismatches", self.attempt_mismatches),
            ("duplicated completions", self.duplicated_completions), ("handler starts", self.starts),
            ("killed mid-handler", self.killed_mid_handler),
            ("claimed by a killed worker, never started", self.claimed_never_started),
            ("LeaseExpired records", self.lease_expired), ("outcomes discarded", self.discarded_outcomes),
            ("unexpected worker exits", self.unexpected_exits),
            ("final states", ", ".join(f"{k}={v}" for k, v in sorted(self.states.items()))),
            ("elapsed", f"{self.elapsed:.1f} s"), ("seed", self.seed),
        ]
        lines = ["| figure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
        if self.problems:
            lines += ["", f"{len(self.problems)} problem(s):", *(f"- {p}" for p in self.problems[:50])]
            if self.log_dir:
                lines.append(f"worker logs: {self.log_dir}")
        return "\n".join(lines)


# ---------------------------------------------------------------- the database


def prepare_crash_database(url: str) -> None:
    """Migrate ``url`` and add the ``crash_events`` table the workers write their events to."""
    q = make_queue(url)
    q.migrate()
    q.close()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(EVENTS_DDL)


@contextmanager
def crash_database(server_url: str, *, keep: bool = False) -> Iterator[str]:
    """A database of the suite's own on the server, migrated, with the ``crash_events`` table."""
    url = devdb.create_database(server_url, prefix="finejobs_crash")
    try:
        prepare_crash_database(url)
        yield url
    finally:
        if not keep:
            devdb.drop_database(server_url, url)


# ---------------------------------------------------------------- worker processes


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path
    killed_at: datetime | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class _Fleet:
    def __init__(self, url: str, log_dir: Path, *, concurrency: int, lease: float, maintenance_interval: float):
        self.url = url
        self.log_dir = log_dir
        self.args = ["--concurrency", str(concurrency), "--lease", str(lease),
                     "--maintenance-interval", str(maintenance_interval), "--poll-interval", "0.05"]
        self.procs: list[_Proc] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINEJOBS_")}
        env.update(FINEJOBS_DATABASE_URL=url, PYTHONUNBUFFERED="1")
        self.env = env

    def start(self) -> _Proc:
        path = self.log_dir / f"worker{len(self.procs)}.log"
        with path.open("wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", "bench.crash_worker", *self.args], cwd=REPO_ROOT,
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT)
        proc = _Proc(popen, path)
        self.procs.append(proc)
        return proc

    def alive(self) -> list[_Proc]:
        return [p for p in self.procs if p.killed_at is None and p.popen.poll() is None]

    def wait_started(self, procs: list[_Proc], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for proc in procs:
            while " started: " not in proc.log():
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"crash worker exited early ({proc.popen.returncode}):\n{proc.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"crash worker did not start within {timeout}s:\n{proc.log()}")
                time.sleep(0.05)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(10)


def _db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def _busy_pids(conn: psycopg.Connection[Any]) -> set[int]:
    """Pids with a handler running now: a start with no finish yet."""
    rows = conn.execute(
        "SELECT DISTINCT s.pid FROM crash_events s WHERE s.event = 'start' AND s.at > clock_timestamp() - "
        "interval '2 seconds' AND NOT EXISTS (SELECT 1 FROM crash_events f WHERE f.event = 'finish' "
        "AND f.job_id = s.job_id AND f.attempt = s.attempt AND f.pid = s.pid)"
    ).fetchall()
    return {int(r[0]) for r in rows}


def _unfinished(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE state <> ALL(%s)", (list(FINAL),)).fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------- the run


def run_crash_suite(
    server_url: str,
    *,
    jobs: int,
    workers: int,
    kills: int,
    seed: int,
    concurrency: int = 4,
    lease: float = 2.0,
    maintenance_interval: float = 0.2,
    spread: float | None = None,
    max_sleep_ms: int = 50,
    drain_timeout: float = 120.0,
    keep_database: bool = False,
) -> CrashReport:
    """Run the crash suite on a fresh database of ``server_url``'s server; see the module docstring."""
    rng = random.Random(seed)
    spread = spread if spread is not None else max(3.0, 1.5 * kills)
    log_dir = Path(tempfile.mkdtemp(prefix="finejobs-crash-"))
    command = (f"python -m bench.crash --jobs {jobs} --workers {workers} --kills {kills} --seed {seed} "
               f"--concurrency {concurrency} --lease {lease:g} --spread {spread:g}")
    with crash_database(server_url, keep=keep_database) as url:
        fleet = _Fleet(url, log_dir, concurrency=concurrency, lease=lease,
                       maintenance_interval=maintenance_interval)
        kill_times: dict[int, datetime] = {}
        problems: list[str] = []
        restarts = 0
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            try:
                t_start = time.monotonic()
                fleet.wait_started([fleet.start() for _ in range(workers)])
                ids = _enqueue(url, jobs=jobs, spread=spread, max_sleep_ms=max_sleep_ms, rng=rng)
                t_enqueued = time.monotonic()
                for i in range(kills):
                    at = t_enqueued + spread * (i + 1) / (kills + 1) + rng.uniform(-0.2, 0.2)
                    time.sleep(max(0.0, at - time.monotonic()))
                    victim = _choose_victim(fleet, conn, rng)
                    if victim is None:
                        problems.append(f"kill {i + 1}: no live worker to kill")
                        continue
                    victim.popen.send_signal(signal.SIGKILL)
                    victim.popen.wait(10)
                    victim.killed_at = kill_times[victim.pid] = _db_now(conn)
                    fleet.start()
                    restarts += 1
                deadline = time.monotonic() + drain_timeout + spread
                while _unfinished(conn) and time.monotonic() < deadline:
                    time.sleep(0.1)
                elapsed = time.monotonic() - t_start
                unexpected = [p for p in fleet.procs if p.killed_at is None and p.popen.poll() is not None]
                for proc in unexpected:
                    problems.append(f"worker pid {proc.pid} exited by itself ({proc.popen.returncode}): "
                                    f"{proc.log()[-500:]}")
                # A worker started after the last kill may still be importing: until it has installed its
                # signal handlers, SIGTERM's default action would end it (no job of its own, but no clean stop).
                fleet.wait_started(fleet.alive())
                for proc in fleet.alive():
                    proc.popen.send_signal(signal.SIGTERM)
                for proc in fleet.alive():
                    try:
                        code = proc.popen.wait(30)
                    except subprocess.TimeoutExpired:
                        code = None
                    if code != 0:
                        problems.append(f"worker pid {proc.pid} did not stop cleanly on SIGTERM (exit {code})")
            finally:
                fleet.kill_all()
            report = _analyse(conn, ids=ids, kill_times=kill_times, problems=problems)
        report.workers = workers
        report.kills = len(kill_times)
        report.restarts = restarts
        report.elapsed = elapsed
        report.unexpected_exits = len(unexpected)
        report.discarded_outcomes = sum(p.log().count(" discarded: ") for p in fleet.procs)
        report.seed = seed
        report.command = command
    report.log_dir = str(log_dir)
    if report.ok and not keep_database:
        for path in log_dir.iterdir():
            path.unlink()
        log_dir.rmdir()
        report.log_dir = None
    return report


def _enqueue(url: str, *, jobs: int, spread: float, max_sleep_ms: int, rng: random.Random) -> list[int]:
    q = make_queue(url)
    try:
        now = datetime.now(UTC)
        specs = [JobSpec(Work(n=n, sleep_ms=rng.randint(1, max_sleep_ms)),
                         run_at=now + timedelta(seconds=rng.uniform(0, spread)))
                 for n in range(jobs)]
        ids: list[int] = []
        for i in range(0, len(specs), 1000):
            ids += [job.id for job in q.kind(KIND).enqueue_many(specs[i:i + 1000])]
        return ids
    finally:
        q.close()


def _choose_victim(fleet: _Fleet, conn: psycopg.Connection[Any], rng: random.Random) -> _Proc | None:
    """A live worker with a handler running right now (waits up to 1 s for one), else any live worker."""
    deadline = time.monotonic() + 1.0
    while True:
        alive = fleet.alive()
        if not alive:
            return None
        busy = _busy_pids(conn)
        candidates = [p for p in alive if p.pid in busy]
        if candidates:
            return rng.choice(candidates)
        if time.monotonic() > deadline:
            return rng.choice(alive)
        time.sleep(0.02)


# ---------------------------------------------------------------- the checks


@dataclass
class _Run:
    attempt: int
    pid: int
    start: datetime
    finish: datetime | None
    end: datetime
    lease_lost: bool


def _owner_pid(worker_id: str | None) -> int | None:
    try:
        return int(str(worker_id).rsplit(":", 2)[1])
    except (IndexError, ValueError):
        return None


def _analyse(conn: psycopg.Connection[Any], *, ids: list[int], kill_times: dict[int, datetime],
             problems: list[str]) -> CrashReport:
    rows = {r[0]: r for r in conn.execute(
        "SELECT id, state, attempt, max_attempts, lease_owner, lease_expires_at, errors FROM finejobs_jobs"
    ).fetchall()}
    events: dict[int, list[tuple[int, int, str, datetime, bool]]] = defaultdict(list)
    for job_id, attempt, pid, event, at, lease_lost in conn.execute(
        "SELECT job_id, attempt, pid, event, at, lease_lost FROM crash_events ORDER BY id"
    ):
        events[job_id].append((attempt, pid, event, at, lease_lost))
    end_of_run = _db_now(conn)

    states: Counter[str] = Counter(r[1] for r in rows.values())
    report = CrashReport(jobs=len(ids), workers=0, kills=0, restarts=0, lost=0, overlapping_runs=0,
                         duplicated_completions=0, elapsed=0.0, states=dict(states), problems=problems)
    stray = set(events) - set(ids)
    if stray:
        problems.append(f"handler ran for {len(stray)} ids that were never enqueued: {sorted(stray)[:10]}")
    for job_id in ids:
        row = rows.get(job_id)
        if row is None:
            report.lost += 1
            problems.append(f"job {job_id}: missing from the table")
            continue
        _, state, attempt, max_attempts, lease_owner, lease_expires_at, errors = row
        if state not in FINAL:
            report.lost += 1
            problems.append(f"job {job_id}: not final ({state}, attempt {attempt})")
        if state == "running":
            report.left_running += 1
        if lease_owner is not None or lease_expires_at is not None:
            problems.append(f"job {job_id}: still leased by {lease_owner} ({state})")
        if state != "succeeded":
            problems.append(f"job {job_id}: ended {state} after {attempt}/{max_attempts} attempts: "
                            f"{[e.get('error') for e in errors]}")
        report.overlapping_runs += check_job(job_id, state, attempt, errors, events.get(job_id, []),
                                              kill_times, end_of_run, report)
    return report


def check_job(job_id: int, state: str, attempt: int, errors: list[dict[str, Any]],
               events: list[tuple[int, int, str, datetime, bool]], kill_times: dict[int, datetime],
               end_of_run: datetime, report: CrashReport) -> int:
    """Check one job's records; returns its number of overlapping runs. Adds to the report's counters."""
    problems = report.problems
    attempt_problems: list[str] = []
    starts: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
    finishes: dict[tuple[int, int], tuple[datetime, bool]] = {}
    for ev_attempt, pid, event, at, lease_lost in events:
        if event == "start":
            starts[ev_attempt].append((pid, at))
        else:
            finishes[(ev_attempt, pid)] = (at, lease_lost)
    lease_expired: dict[int, int | None] = {}
    for err in errors:
        if err.get("error") == "LeaseExpired":
            report.lease_expired += 1
            owner_pid = _owner_pid(err.get("worker"))
            lease_expired[int(err["attempt"])] = owner_pid
            if owner_pid not in kill_times:
                problems.append(f"job {job_id}: attempt {err['attempt']} lost the lease of worker "
                                f"{err.get('worker')}, which was never killed")
        elif state == "succeeded":
            problems.append(f"job {job_id}: unexpected error recorded: {err.get('error')}: {err.get('message')}")

    runs: list[_Run] = []
    for k, started in sorted(starts.items()):
        report.starts += len(started)
        if len(started) > 1:
            attempt_problems.append(f"attempt {k} started {len(started)} times (pids {[p for p, _ in started]})")
        if not 1 <= k <= attempt:
            attempt_problems.append(f"a start recorded attempt {k}, the job's attempt is {attempt}")
        for pid, at in started:
            fin = finishes.get((k, pid))
            if fin is not None:
                runs.append(_Run(k, pid, at, fin[0], fin[0], fin[1]))
                continue
            report.killed_mid_handler += 1
            if pid in kill_times:
                runs.append(_Run(k, pid, at, None, max(at, kill_times[pid]), False))
            else:
                problems.append(f"job {job_id}: attempt {k} started in pid {pid}, which was not killed, "
                                "and never finished")
                runs.append(_Run(k, pid, at, None, end_of_run, False))
            if k not in lease_expired:
                attempt_problems.append(f"attempt {k} was killed mid-handler but no LeaseExpired is recorded")

    never_started = 0
    for k in range(1, attempt + 1):
        if k not in starts:
            never_started += 1
            if k not in lease_expired:
                attempt_problems.append(f"attempt {k} was counted but neither started nor lost a lease")
        elif k < attempt and k not in lease_expired:
            attempt_problems.append(f"attempt {k} is not the last, yet no LeaseExpired is recorded for it")
    report.claimed_never_started += never_started
    if attempt != len(starts) + never_started:
        attempt_problems.append(f"attempt {attempt} != {len(starts)} starts + {never_started} never started")

    complete = [r for r in runs if r.finish is not None]
    if len(complete) > 1:
        report.duplicated_completions += 1
    if state == "succeeded" and not any(r.attempt == attempt for r in complete):
        problems.append(f"job {job_id}: succeeded, but its last attempt {attempt} has no complete start/finish")

    overlaps = 0
    runs.sort(key=lambda r: r.start)
    for a, b in itertools.pairwise(runs):
        if b.start < a.end:
            overlaps += 1
            problems.append(
                f"job {job_id}: attempt {b.attempt} (pid {b.pid}) started at {b.start.isoformat()} while attempt "
                f"{a.attempt} (pid {a.pid}) ran until {a.end.isoformat()}"
                + (" [that run had lost its lease]" if a.lease_lost else ""))
    if attempt_problems:
        report.attempt_mismatches += 1
        problems += [f"job {job_id}: {p}" for p in attempt_problems]
    return overlaps


# ---------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("FINEJOBS_DATABASE_URL"),
                        help="server to run on (a database is created and dropped) [default: discovered]")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=2.0, help="lease in seconds")
    parser.add_argument("--spread", type=float, default=None,
                        help="jobs become due over this many seconds [default: 1.5 s per kill, at least 3]")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    server_url = args.database_url
    if server_url is None:
        from finejobs.devdb import discover_server_url

        server_url = discover_server_url()
    report = run_crash_suite(server_url, jobs=args.jobs, workers=args.workers, kills=args.kills, seed=args.seed,
                             concurrency=args.concurrency, lease=args.lease, spread=args.spread,
                             keep_database=args.keep_database)
    print(report.table())
    print(f"\ncommand: {report.command}")
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
