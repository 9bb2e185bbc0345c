"""The pipeline crash run: real worker processes, killed with SIGKILL in the middle of a 3-step pipeline with a
reduction, and the run still commits every chunk once and its reduction's result once.

``run_pipeline_crash`` creates a database of its own, starts ``workers`` worker processes
(``python -m bench.pipeline_crash --worker``: this module's queue, a 1 s lease kept alive by the heartbeat),
starts one run of the ``crash-export`` pipeline (fetch ids -> expand each id into two items, streaming ->
write, gated: one summary per chunk -> reduce), and kills workers with SIGKILL while they run a step's
handler: each kill targets a worker running a job of a chosen step (expand, write, the reduction), and a
replacement is started. The killed attempts' leases run out, the jobs are rescued and run again. Then:

- the run succeeded, every chunk is ``done`` (none pending, ready, queued, failed or skipped), and each step's
  counters add up (chunks done = total; items: 1, N, 2N, 2N/chunk_size summaries);
- the committed result counts every item exactly once (2N items, 2N distinct, each id's two parts);
- there is exactly one reduction job, and it succeeded; every job ended succeeded.

Handlers that ran more than once (killed mid-run, or after their commit and before their outcome was
written) are reported: at-least-once execution is the contract, exactly-once is for what is committed.

    python -m bench.pipeline_crash [--items 2400 --workers 3 --kills 4 --seed 1]
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from finejobs import Queue, Retry, devdb
from finejobs.pipelines import Pipeline, StepContext, pipeline
from finejobs.store import libpq_url

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "crash-export"
CHUNK = 100
RETRY = Retry(max_attempts=25, backoff=timedelta(milliseconds=10), max_backoff=timedelta(milliseconds=100))
EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS pipeline_crash_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, step text NOT NULL, job_id bigint NOT NULL,
    attempt integer NOT NULL, pid integer NOT NULL, event text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


def _record(step: str, ctx: StepContext, event: str) -> None:
    with psycopg.connect(libpq_url(os.environ["FINEJOBS_DATABASE_URL"]), autocommit=True) as conn:
        conn.execute("INSERT INTO pipeline_crash_events (step, job_id, attempt, pid, event) "
                     "VALUES (%s, %s, %s, %s, %s)", (step, ctx.job.id, ctx.attempt, os.getpid(), event))


def make_queue(url: str | None = None, *, sleep_ms: int = 150) -> tuple[Queue, Pipeline]:
    """The crash run's queue and pipeline (``url`` defaults to FINEJOBS_DATABASE_URL)."""
    q = Queue(url)
    export = pipeline(q, NAME, chunk_size=CHUNK)
    pause = sleep_ms / 1000

    @export.step("fetch", retry=RETRY)
    def fetch(params: dict[str, Any], ctx: StepContext) -> None:
        _record("fetch", ctx, "start")
        for start in range(0, int(params["items"]), 250):  # several emits, chunks flushed as they fill
            ctx.emit(range(start, min(start + 250, int(params["items"]))))
        time.sleep(pause)

    @export.step("expand", gated=False, retry=RETRY)
    def expand(ids: list[int], ctx: StepContext) -> None:
        _record("expand", ctx, "start")
        time.sleep(pause)
        ctx.emit([{"id": i, "part": part} for i in ids for part in (0, 1)])
        _record("expand", ctx, "finish")

    @export.step("write", retry=RETRY)
    def write(items: list[dict[str, int]], ctx: StepContext) -> None:
        _record("write", ctx, "start")
        time.sleep(pause)
        ctx.emit([{"n": len(items), "keys": [f"{i['id']}.{i['part']}" for i in items]}])
        _record("write", ctx, "finish")

    @export.reduce(retry=RETRY)
    def report(outputs: Iterator[dict[str, Any]], ctx: StepContext) -> dict[str, int]:
        _record("reduce", ctx, "start")
        keys: list[str] = []
        files = 0
        for out in outputs:
            files += 1
            keys += out["keys"]
        time.sleep(4 * pause)  # a window for a kill in the middle of the reduction
        _record("reduce", ctx, "finish")
        return {"files": files, "items": len(keys), "distinct": len(set(keys))}

    return q, export


queue, export = make_queue()


@dataclass
class PipelineCrashReport:
    items: int
    kills: int = 0  # each while the victim ran a step's handler
    state: str = ""
    result: Any = None
    handler_starts: dict[str, int] = field(default_factory=dict)
    reduce_jobs: int = 0
    elapsed: float = 0.0
    problems: list[str] = field(default_factory=list)
    log_dir: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [("items", self.items), ("kills (SIGKILL) mid-handler", self.kills),
                ("run state", self.state), ("result", self.result), ("reduction jobs", self.reduce_jobs),
                ("handler starts", ", ".join(f"{k}={v}" for k, v in sorted(self.handler_starts.items()))),
                ("elapsed", f"{self.elapsed:.1f} s")]
        lines = ["| figure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
        if self.problems:
            lines += ["", f"{len(self.problems)} problem(s):", *(f"- {p}" for p in self.problems[:30])]
            if self.log_dir:
                lines.append(f"worker logs: {self.log_dir}")
        return "\n".join(lines)


class _Fleet:
    def __init__(self, url: str, log_dir: Path, *, lease: float, concurrency: int) -> None:
        self.log_dir = log_dir
        self.args = ["--worker", "--lease", str(lease), "--concurrency", str(concurrency)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FINEJOBS_")}
        self.env.update(FINEJOBS_DATABASE_URL=url, PYTHONUNBUFFERED="1")
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.killed: set[int] = set()

    def start(self) -> subprocess.Popen[bytes]:
        path = self.log_dir / f"worker{len(self.procs)}.log"
        with path.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "bench.pipeline_crash", *self.args], cwd=REPO_ROOT,
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, path))
        return proc

    def alive(self) -> dict[int, subprocess.Popen[bytes]]:
        return {p.pid: p for p, _ in self.procs if p.pid not in self.killed and p.poll() is None}

    def wait_started(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for proc, path in self.procs:
            while " started: " not in path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a crash worker did not start:\n{path.read_text(errors='replace')}")
                time.sleep(0.05)

    def stop(self) -> list[str]:
        problems = []
        # A worker started after the last kill may still be importing: until it has installed its signal
        # handlers, SIGTERM's default action would end it (no clean stop). Wait for it first.
        deadline = time.monotonic() + 60
        for proc, path in self.procs:
            while proc.pid in self.alive() and " started: " not in path.read_text(errors="replace") \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
        alive = list(self.alive().values())
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        for proc in alive:
            try:
                if proc.wait(30) != 0:
                    problems.append(f"worker pid {proc.pid} exited {proc.returncode} on SIGTERM")
            except subprocess.TimeoutExpired:
                problems.append(f"worker pid {proc.pid} did not stop on SIGTERM")
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        return problems


def _victim(conn: psycopg.Connection[Any], fleet: _Fleet, kind: str, timeout: float,
            rng: random.Random) -> int | None:
    """The pid of a live worker whose handler of ``kind`` has started and not finished (None: none came)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        over = conn.execute("SELECT finished_at IS NOT NULL FROM finejobs_pipeline_steps WHERE name = %s",
                            (kind,)).fetchone()
        if over is not None and over[0]:
            return None  # that step is over
        alive = fleet.alive()
        rows = conn.execute(
            "SELECT e.pid FROM pipeline_crash_events e JOIN finejobs_jobs j ON j.id = e.job_id "
            "WHERE e.step = %s AND e.event = 'start' AND j.state = 'running' AND j.attempt = e.attempt "
            "AND NOT EXISTS (SELECT 1 FROM pipeline_crash_events f WHERE f.job_id = e.job_id "
            "AND f.attempt = e.attempt AND f.event = 'finish')", (kind,)).fetchall()
        pids = [int(r[0]) for r in rows if int(r[0]) in alive]
        if pids:
            return rng.choice(sorted(set(pids)))
        time.sleep(0.02)
    return None


def run_pipeline_crash(server_url: str, *, items: int = 2400, workers: int = 3, kills: int = 4, seed: int = 1,
                       lease: float = 1.0, concurrency: int = 2, timeout: float = 90.0) -> PipelineCrashReport:
    """Run the pipeline crash scenario on a fresh database of ``server_url``'s server (see the docstring)."""
    rng = random.Random(seed)
    report = PipelineCrashReport(items=items)
    log_dir = Path(tempfile.mkdtemp(prefix="finejobs-pipeline-crash-"))
    url = devdb.create_database(server_url, prefix="finejobs_pcrash")
    t0 = time.monotonic()
    try:
        q, made = make_queue(url)
        q.migrate()
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute(EVENTS_DDL)
            fleet = _Fleet(url, log_dir, lease=lease, concurrency=concurrency)
            try:
                for _ in range(workers):
                    fleet.start()
                fleet.wait_started()
                run = made.start({"items": items})
                # In the order the run goes through its steps: the last kill hits the reduction.
                middle = sorted(("write", "expand")[i % 2] for i in range(max(0, kills - 2)))
                targets = (["expand", *middle, "reduce"] if kills > 1 else ["reduce"])[:kills]
                for kind in targets:
                    pid = _victim(conn, fleet, kind, timeout=10.0, rng=rng)
                    if pid is None:
                        continue  # that step is over: no kill
                    fleet.alive()[pid].send_signal(signal.SIGKILL)
                    fleet.alive()[pid].wait(10)
                    fleet.killed.add(pid)
                    report.kills += 1
                    fleet.start()
                done = run.wait(timeout=timeout, poll=0.1)
            finally:
                report.problems += fleet.stop()
            report.elapsed = time.monotonic() - t0
            _analyse(conn, report, done.state, done.result, [s.to_json() for s in done.steps], items)
        q.close()
    finally:
        devdb.drop_database(server_url, url)
    if report.ok:
        for path in log_dir.iterdir():
            path.unlink()
        log_dir.rmdir()
    else:
        report.log_dir = str(log_dir)
    return report


def _analyse(conn: psycopg.Connection[Any], report: PipelineCrashReport, state: str, result: Any,
             steps: list[dict[str, Any]], items: int) -> None:
    problems = report.problems
    report.state, report.result = state, result
    if state != "succeeded":
        problems.append(f"the run ended {state}")
    files = -(-2 * items // CHUNK)
    if result != {"files": files, "items": 2 * items, "distinct": 2 * items}:
        problems.append(f"the committed result is {result}, expected {files} files and {2 * items} distinct items")
    chunks = dict(conn.execute("SELECT state, count(*) FROM finejobs_chunks GROUP BY 1").fetchall())
    if set(chunks) != {"done"}:
        problems.append(f"chunks not all done: {chunks}")
    expected_items = {"fetch": 1, "expand": items, "write": 2 * items, "reduce": files}
    for step in steps:
        if step["chunks_done"] != step["chunks_total"] or step["state"] != "done":
            problems.append(f"step {step['name']}: {step['chunks_done']}/{step['chunks_total']} chunks, "
                            f"{step['state']}")
        if step["items_done"] != expected_items[step["name"]] or step["items_total"] != step["items_done"]:
            problems.append(f"step {step['name']}: items {step['items_done']}/{step['items_total']}, expected "
                            f"{expected_items[step['name']]}")
    jobs = dict(conn.execute("SELECT state, count(*) FROM finejobs_jobs GROUP BY 1").fetchall())
    if set(jobs) != {"succeeded"}:
        problems.append(f"jobs not all succeeded: {jobs}")
    report.reduce_jobs = int(conn.execute(
        f"SELECT count(*) FROM finejobs_jobs WHERE kind = '{NAME}.reduce'").fetchone()[0])  # type: ignore[index]
    if report.reduce_jobs != 1:
        problems.append(f"{report.reduce_jobs} reduction jobs")
    report.handler_starts = {str(k): int(v) for k, v in conn.execute(
        "SELECT step, count(*) FROM pipeline_crash_events WHERE event = 'start' GROUP BY 1").fetchall()}


def _worker_main(argv: list[str]) -> int:
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_crash --worker")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        queue.worker(concurrency=args.concurrency, poll_interval=0.05, lease=timedelta(seconds=args.lease),
                     maintenance_interval=0.2, shutdown_grace=10.0).run()
    finally:
        queue.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if "--worker" in argv:
        return _worker_main(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("FINEJOBS_DATABASE_URL"))
    parser.add_argument("--items", type=int, default=2400)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    server_url = args.database_url or devdb.discover_server_url()
    report = run_pipeline_crash(server_url, items=args.items, workers=args.workers, kills=args.kills, seed=args.seed)
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
