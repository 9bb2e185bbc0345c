"""``python -m bench processes``: ``finejobs worker --processes 1`` against ``--processes 2``, beside the raw loop.

Every run drains the same n no-op jobs from an emptied table. finejobs runs the real CLI (one command: the
supervisor and its children); the raw SKIP LOCKED loop (bench.core.raw_process's statement, k=100) runs in 1 or 2
processes of its own (``python -m bench.processes raw URL N``). The figure of every run comes from the rows, so start-up
and enqueue never count: finejobs' processes start and idle (every child listening), then the jobs are enqueued
with one ``run_at`` a little ahead, and the figure is ``n / (max(finished_at) - run_at)`` (as bench.core); the
raw loops connect and wait on stdin, the jobs are enqueued, and the figure is ``n / (max(finished_at) - the
database's clock when they were told to go)``. Runs go in rounds (raw 1, raw 2,
finejobs 1, finejobs 2) and each figure is the best of the rounds, with the median beside it. The verdict is
the scaling ratio, 2 processes over 1, of the best runs: target >= 1.4x.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

import finejobs
from bench.core import (
    BATCH,
    REPO_ROOT,
    _max_id,
    _queue,
    _succeeded_span,
    create_database,
    drop_database,
    enqueue_bulk,
    truncate,
)
from bench.noop_app import Noop
from bench.runs import BestOfRuns
from bench.shards import _listening

TARGET = 1.4  # 2 processes over 1, finejobs (issue #16, item 5)
RAW_K = 100
# bench.core.raw_process's statement: claim k jobs with SKIP LOCKED and mark them done, one statement per batch
RAW_CLAIM = ("WITH picked AS (SELECT id FROM finejobs_jobs WHERE state = 'available' AND shard = 'default' "
             "AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
             "UPDATE finejobs_jobs j SET state = 'succeeded', attempt = 1, finished_at = now() "
             "FROM picked WHERE j.id = picked.id")


def _log(message: str) -> None:
    print(f"processes: {message}", file=sys.stderr, flush=True)


@dataclass
class Figure(BestOfRuns):
    name: str
    processes: int
    jobs: int
    runs: list[float] = field(default_factory=list)  # seconds of each run


@dataclass(frozen=True)
class ProcessesResult:
    jobs: int
    concurrency: int
    repeats: int
    raw: tuple[Figure, Figure]
    finejobs: tuple[Figure, Figure]

    @property
    def raw_scaling(self) -> float:
        return self.raw[1].rate / self.raw[0].rate

    @property
    def scaling(self) -> float:
        return self.finejobs[1].rate / self.finejobs[0].rate

    @property
    def median_scaling(self) -> float:
        return self.finejobs[1].median_rate / self.finejobs[0].median_rate


def _enqueue(url: str, n: int, run_at: datetime) -> None:
    """n no-op jobs due at ``run_at`` (bench.core's bulk enqueue, with an absolute run_at)."""
    queue, noop = _queue(url)
    try:
        for start in range(0, n, BATCH):
            noop.enqueue_many([Noop(n=i) for i in range(start, min(n, start + BATCH))], run_at=run_at)
    finally:
        queue.close()


def _wait(predicate: object, what: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        dead = [p.returncode for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a process exited early (exit {dead[0]}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_finejobs(url: str, n: int, processes: int, concurrency: int) -> float:
    """``finejobs worker --processes P`` (one command) drains n no-op jobs; the seconds from due to the last."""
    truncate(url)
    after_id = _max_id(url)
    env = dict(os.environ, FINEJOBS_DATABASE_URL=url)
    proc = subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", "bench.noop_app:queue",
                             "--processes", str(processes), "--concurrency", str(concurrency),
                             "--poll-interval", "0.02", "--log-level", "WARNING"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait(lambda: _listening(url) >= processes, f"{processes} listening workers", [proc])
        time.sleep(0.2)  # past LISTEN: the producers are polling
        lead = 1.0 + n / 20_000  # the enqueue (slowed by the idle workers' polls) ends before the jobs are due
        due = finejobs.clock.utcnow() + timedelta(seconds=lead)
        _enqueue(url, n, due)
        if finejobs.clock.utcnow() >= due:
            raise RuntimeError(f"the enqueue of {n:,} jobs took over {lead:.1f}s: the run would count it")
        return _succeeded_span(url, n, timeout=300, after_id=after_id, procs=[proc])
    finally:
        proc.send_signal(signal.SIGTERM)  # a graceful stop of the supervisor and its children (not measured)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        deadline = time.monotonic() + 10
        while _listening(url) and time.monotonic() < deadline:
            time.sleep(0.05)


def run_raw(url: str, n: int, processes: int) -> float:
    """The raw loop in P processes of its own, started and waiting, then told to go once the jobs are due."""
    truncate(url)
    enqueue_bulk(url, n)
    procs = [subprocess.Popen([sys.executable, "-m", "bench.processes", "raw", url, str(n)], cwd=REPO_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(processes)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError("a raw loop process did not start")
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            start = row[0]
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            for proc in procs:
                if proc.wait(300) != 0:
                    raise RuntimeError(f"a raw loop process exited {proc.returncode}")
            row = conn.execute("SELECT count(*), extract(epoch FROM max(finished_at) - %s) FROM finejobs_jobs "
                               "WHERE state = 'succeeded'", (start,)).fetchone()
            assert row is not None
            if row[0] != n:
                raise RuntimeError(f"the raw loops finished {row[0]} of {n} jobs")
            return float(row[1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def bench_processes(server_url: str, *, n: int, concurrency: int, repeats: int) -> ProcessesResult:
    url = create_database(server_url)
    raw = (Figure(f"raw SKIP LOCKED loop, k={RAW_K}, 1 process", 1, n),
           Figure(f"raw SKIP LOCKED loop, k={RAW_K}, 2 processes", 2, n))
    fj = (Figure(f"finejobs worker --processes 1 --concurrency {concurrency}", 1, n),
          Figure(f"finejobs worker --processes 2 --concurrency {concurrency}", 2, n))
    try:
        for round_ in range(1, repeats + 1):
            for figure in raw:
                figure.runs.append(run_raw(url, n, figure.processes))
            for figure in fj:
                figure.runs.append(run_finejobs(url, n, figure.processes, concurrency))
            _log(f"round {round_}/{repeats}: " + ", ".join(f"{f.processes}p {'raw' if f in raw else 'finejobs'} "
                                                          f"{n / f.runs[-1]:,.0f}/s" for f in (*raw, *fj)))
    finally:
        drop_database(server_url, url)
    return ProcessesResult(n, concurrency, repeats, raw, fj)


def processes_markdown(result: ProcessesResult) -> str:
    each = "one run" if result.repeats == 1 else f"best of {result.repeats} runs (median beside it)"
    lines = [
        f"Worker processes: {result.jobs:,} no-op jobs per run, {each}; the raw loop in the same rounds",
        "",
        "| measurement | jobs | seconds | jobs/s | median jobs/s | vs 1 process | vs raw loop, same processes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pair in (result.raw, result.finejobs):
        for figure, raw in zip(pair, result.raw, strict=True):
            lines.append(f"| {figure.name} | {figure.jobs:,} | {figure.seconds:.2f} | {figure.rate:,.0f} | "
                         f"{figure.median_rate:,.0f} | {figure.rate / pair[0].rate:.2f}x | "
                         f"{figure.rate / raw.rate:.0%} |")
    met = "yes" if result.scaling >= TARGET else "no"
    lines += ["", f"Scaling, 2 processes over 1: finejobs {result.scaling:.2f}x (medians "
                  f"{result.median_scaling:.2f}x), raw loop {result.raw_scaling:.2f}x; target >= {TARGET}x: {met}"]
    return "\n".join(lines)


def write_processes_json(path: Path, title: str, result: ProcessesResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"title": title, **asdict(result), "scaling": result.scaling, "median_scaling": result.median_scaling,
            "raw_scaling": result.raw_scaling, "target": TARGET}
    path.write_text(json.dumps(data, indent=2) + "\n")


def _raw_child(url: str, n: int) -> None:
    """A raw loop process: connect, say ready, wait for 'go' on stdin, then bench.core's raw loop (the same
    statement) on that connection until a claim finds nothing."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        print("ready", flush=True)
        sys.stdin.readline()
        done = 0
        while done < n:
            count = conn.execute(RAW_CLAIM, (RAW_K,)).rowcount
            if count == 0:
                break
            done += count


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "raw":
        raise SystemExit("usage: python -m bench.processes raw URL N")
    _raw_child(sys.argv[2], int(sys.argv[3]))
