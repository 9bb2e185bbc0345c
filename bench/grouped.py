"""Groups: the overhead of group membership on processing, against the same no-op jobs as plain jobs.

N no-op jobs are drained by one worker process (the real CLI, concurrency C) as plain jobs, then the same N
as members of one group (``queue.group(name).enqueue_many(...)``, sealed): every member's completion then
also moves the group's counters in the completer's transaction, and the last one finishes the group. If
``finejobs.pipelines`` exists, the same N items also run as a 2-step pipeline: a first step emits the N
items with chunk_size 1 (so N chunk jobs, as many jobs as the plain run; at most PIPE_1_CAP items, as it is
slow), a second no-op step takes each; and once more with chunk_size 100 (what pipelines are for).
Plain and group figures are taken as bench.core takes them (a common future run_at, the worker started and
idle, the figure from the rows' timestamps: enqueueing is not counted); the pipeline's runs from the run's
first job's creation to its last job's finish (its N jobs are enqueued by its first step, inside the run:
that is counted). The kinds of run alternate in rounds; the table gives the best run with the median beside.
The raw SKIP LOCKED loop (k=100, one connection, no worker running) is measured on the same database. One
worker process serves every kind (this module's ``queue``: ``--app bench.grouped:queue``). Target
(issue 14): a group, and a pipeline, at most 15% slower than plain jobs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

import finejobs
from bench.core import BATCH, REPO_ROOT, _succeeded_span, create_database, drop_database
from bench.noop_app import Noop
from bench.runs import BestOfRuns
from bench.shards import Workers, _listening, raw_drain

TARGET = 0.85  # a group's throughput at least 85% of plain jobs' (at most 15% slower)
PIPE_1_CAP = 5_000  # items of the one-item-a-job pipeline run (it runs at a few hundred jobs/s: keep it short)
PIPELINE = "bench-pipe"

queue = finejobs.Queue()  # the worker processes' app (FINEJOBS_DATABASE_URL); the benchmark configures its URL


@queue.job("noop", retry=finejobs.Retry(max_attempts=1))
def noop(payload: Noop) -> None:
    return None


def _declare_pipeline(name: str, chunk_size: int) -> Any:
    if importlib.util.find_spec("finejobs.pipelines") is None:
        return None
    from finejobs.pipelines import pipeline

    pipe = pipeline(queue, name, chunk_size=chunk_size)

    @pipe.step("emit", retry=finejobs.Retry(max_attempts=1))
    def emit(params: dict[str, Any], ctx: Any) -> None:
        ctx.emit(range(int(params["n"])))

    @pipe.step("work", retry=finejobs.Retry(max_attempts=1))
    def work(items: list[int]) -> None:
        return None

    return pipe


PIPE = _declare_pipeline(PIPELINE, 1)  # one item a chunk: as many jobs as the plain run
PIPE_100 = _declare_pipeline(PIPELINE + "-100", 100)  # what pipelines are for: 100 items a job


@dataclass(frozen=True)
class GroupRow(BestOfRuns):
    name: str
    jobs: int
    runs: tuple[float, ...]  # seconds per run
    finish_lags: tuple[float, ...] = field(default=())  # group finished_at - last member's finished_at


@dataclass(frozen=True)
class GroupsResult:
    n: int
    concurrency: int
    repeats: int
    rows: tuple[GroupRow, ...]
    raw: GroupRow


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")


def _plain(kind: finejobs.JobKind[[Noop], None], n: int) -> Callable[[datetime | None], None]:
    def enqueue(run_at: datetime | None) -> None:
        for start in range(0, n, BATCH):
            kind.enqueue_many([Noop(n=i) for i in range(start, min(n, start + BATCH))], run_at=run_at)
    return enqueue


def _grouped(queue: finejobs.Queue, n: int, made: list[Any]) -> Callable[[datetime | None], None]:
    def enqueue(run_at: datetime | None) -> None:
        group = queue.group(f"bench-{uuid.uuid4().hex[:10]}")
        for start in range(0, n, BATCH):
            group.enqueue_many("noop", [Noop(n=i) for i in range(start, min(n, start + BATCH))], run_at=run_at)
        group.seal()
        made.append(group)
    return enqueue


def _finish_lag(url: str, group: Any) -> float:
    """Seconds from the last member's finish to the group's (the completion is detected in that transaction)."""
    progress = group.wait(timeout=60)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT max(finished_at) FROM finejobs_jobs WHERE group_id = %s", (group.id,)).fetchone()
    assert row is not None and row[0] is not None and progress.finished_at is not None
    return float((progress.finished_at - row[0]).total_seconds())


def pipelines_available() -> bool:
    return PIPE is not None


def start_workers(url: str, concurrency: int) -> Workers:
    """One worker process (the real CLI) serving this module's queue, started and idle when this returns."""
    env = dict(os.environ, FINEJOBS_DATABASE_URL=url)
    proc = subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", "bench.grouped:queue",
                             "--concurrency", str(concurrency), "--poll-interval", "0.02", "--log-level", "WARNING"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
    workers = Workers(url, [proc])
    deadline = time.monotonic() + 60
    while _listening(url) < 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            workers.stop()
            raise RuntimeError("the worker process did not start (its error is above)")
        time.sleep(0.05)
    time.sleep(0.2)  # past LISTEN: the producer is polling
    return workers


def _pipeline_run(url: str, pipe: Any, n: int, jobs: int) -> float:
    """Seconds from a pipeline run's first job's creation to its last job's finish (``jobs`` jobs)."""
    run = pipe.start({"n": n})
    info = run.wait(timeout=300)
    if info.state != "succeeded":
        raise RuntimeError(f"the pipeline run ended {info.state}: {info.error}")
    _succeeded_span(url, jobs, timeout=60)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*), extract(epoch FROM max(finished_at) - min(created_at)) "
                           "FROM finejobs_jobs").fetchone()
    assert row is not None and row[0] >= jobs, row
    return float(row[1])


def bench_groups(server_url: str, *, n: int, concurrency: int, repeats: int) -> GroupsResult:
    url = create_database(server_url)
    queue.configure(url=url)
    made: list[Any] = []
    runs: dict[str, list[float]] = {"plain": [], "group": [], "pipeline": [], "pipeline-100": [], "raw": []}
    lags: list[float] = []
    workers: Workers | None = None
    try:
        for _ in range(repeats):
            _truncate(url)
            _plain(noop, n)(None)
            runs["raw"].append(raw_drain(url, ["default"], n))
        workers = start_workers(url, concurrency)
        for _ in range(repeats):
            _truncate(url)
            runs["plain"].append(workers.drain(n, _plain(noop, n)))
            _truncate(url)
            runs["group"].append(workers.drain(n, _grouped(queue, n, made)))
            lags.append(_finish_lag(url, made[-1]))
            if PIPE is not None:
                _truncate(url)
                runs["pipeline"].append(_pipeline_run(url, PIPE, min(n, PIPE_1_CAP), min(n, PIPE_1_CAP) + 1))
                _truncate(url)
                runs["pipeline-100"].append(_pipeline_run(url, PIPE_100, n, 1 + -(-n // 100)))
    finally:
        if workers is not None:
            workers.stop()
        queue.close()
        drop_database(server_url, url)
    rows = [GroupRow("plain jobs", n, tuple(runs["plain"])),
            GroupRow("members of one group (sealed)", n, tuple(runs["group"]), tuple(lags))]
    if runs["pipeline"]:
        rows.append(GroupRow("2-step pipeline, chunk_size 1 (N + 1 jobs)", min(n, PIPE_1_CAP), tuple(runs["pipeline"])))
        rows.append(GroupRow("2-step pipeline, chunk_size 100 (N/100 + 1 jobs)", n, tuple(runs["pipeline-100"])))
    return GroupsResult(n, concurrency, repeats, tuple(rows), GroupRow("raw SKIP LOCKED loop, k=100", n,
                                                                       tuple(runs["raw"])))


def groups_markdown(result: GroupsResult) -> str:
    plain = result.rows[0]
    each = "one run" if result.repeats == 1 else f"best of {result.repeats} runs (median beside)"
    lines = [
        f"Groups: {result.n:,} no-op jobs, 1 worker process, concurrency={result.concurrency}; {each}",
        "",
        "| measurement | jobs | seconds | jobs/s | median jobs/s | vs plain jobs | vs raw loop "
        "| group finished after last member |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in (*result.rows, result.raw):
        lag = f"{max(r.finish_lags) * 1000:.0f} ms (worst)" if r.finish_lags else "—"
        lines.append(f"| {r.name} | {r.jobs:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.median_rate:,.0f} | "
                     f"{r.rate / plain.rate:.0%} | {r.rate / result.raw.rate:.0%} | {lag} |")
    smoke = " (a --quick size: a smoke test, not a measurement)" if result.n < 10_000 else ""
    lines.append("")
    for r, what in zip(result.rows[1:3], ("a group", "a pipeline (one item a job)"), strict=False):
        ratio, median = r.rate / plain.rate, r.median_rate / plain.median_rate
        verdict = "met" if ratio >= TARGET else "not met"
        lines.append(f"Target{smoke}: {what} at most {1 - TARGET:.0%} slower than plain jobs: {verdict} "
                     f"(best runs {ratio:.0%} of plain, medians {median:.0%}).")
    if not pipelines_available():
        lines.append("finejobs.pipelines is not there: no pipeline row.")
    return "\n".join(lines)


def write_groups_json(path: Path, title: str, result: GroupsResult) -> None:
    plain = result.rows[0]
    doc = {"title": title, "n": result.n, "concurrency": result.concurrency, "repeats": result.repeats,
           "target": TARGET,
           "rows": [{"name": r.name, "jobs": r.jobs, "runs": list(r.runs), "rate": r.rate, "median_rate": r.median_rate,
                     "vs_plain": r.rate / plain.rate, "finish_lags": list(r.finish_lags)}
                    for r in (*result.rows, result.raw)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
