"""Run the bulk-import story end to end and print what happened to every claim.

1. A CSV of N fake insurance claims is written (csv module) unless one of that size is already there.
2. A second process (probe.py) starts sending "interactive" queries: a job by id, one claim's decision, a
   facility's running total; it runs through every phase below, idle first, so each phase's latency has
   the idle figure beside it.
3. The CSV is imported with ``finejobs.importing.import_jobs``: every row validated by the claim model as
   enqueue would, streamed into the job table with COPY in one transaction, as members of a new group
   (the group counts them in that transaction). A tqdm bar shows the rows written.
4. The group is sealed; worker processes (the real CLI, ``--workers`` x ``--concurrency`` handlers: a
   bounded worker) review the claims; a bar follows the group's progress.
5. The report: the group's final counts, the app table's decisions, and the probe's latency p50/p95/p99
   per phase. The numbers must add up: imported = group total = succeeded + failed (+ expired, cancelled);
   decisions written = succeeded.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from tqdm import tqdm

from examples.bulk_import.app import DECISIONS_DDL, engine, queue, review_claim
from examples.bulk_import.data import ensure_csv
from finejobs.groups import GroupProgress
from finejobs.importing import import_jobs
from finejobs.store import libpq_url

DEMO_DATABASE = "finejobs_bulk_import"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Options:
    claims: int = 1_000_000
    csv_path: Path | None = None
    workers: int = 1
    concurrency: int = 32
    database_url: str | None = None
    idle_seconds: float = 1.0


def resolve_database_url(explicit: str | None) -> str:
    """--database-url, else FINEJOBS_DATABASE_URL, else a database of the example's own on the local or
    embedded server (finejobs.devdb)."""
    url = explicit or os.environ.get("FINEJOBS_DATABASE_URL")
    if url:
        return url
    from finejobs import devdb

    return devdb.create_database(devdb.discover_server_url(), name=DEMO_DATABASE, exist_ok=True)


class Probe:
    """The interactive process, its JSON lines in a temporary file, and the phases to split them by."""

    def __init__(self, url: str, first_job_id: int, claims: int) -> None:
        self.out = tempfile.NamedTemporaryFile("w+", suffix=".jsonl", prefix="bulk-import-probe-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.bulk_import.probe", libpq_url(url), str(first_job_id), str(claims)],
            cwd=REPO_ROOT, stdout=self.out)
        self.phases: list[tuple[str, float, float]] = []
        deadline = time.monotonic() + 30
        while not Path(self.out.name).read_text().startswith('{"ready"'):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the probe process did not start (its error is above)")
            time.sleep(0.05)

    def phase(self, name: str, start: float) -> None:
        self.phases.append((name, start, time.time()))

    def stop(self) -> dict[str, dict[str, list[float]]]:
        """End the probe; latencies (ms) per phase and query."""
        self.proc.terminate()
        self.proc.wait(30)
        found: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name, _, _ in self.phases}
        for line in Path(self.out.name).read_text().splitlines():
            sample = json.loads(line)
            if "t" not in sample:
                continue
            for name, start, end in self.phases:
                if start <= sample["t"] <= end:
                    found[name][sample["query"]].append(sample["ms"])
        self.out.close()
        return found


def start_workers(url: str, opts: Options) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, FINEJOBS_DATABASE_URL=url)
    return [subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", "examples.bulk_import.app:queue",
                              "--concurrency", str(opts.concurrency), "--poll-interval", "0.2",
                              "--log-level", "ERROR"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
            for _ in range(opts.workers)]


def run(opts: Options) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    url = resolve_database_url(opts.database_url)
    queue.configure(url=url, pool_size=4)
    queue.migrate()
    with engine().connect() as conn:
        for ddl in DECISIONS_DDL:
            conn.exec_driver_sql(ddl)
        first_job_id = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM finejobs_jobs").scalar_one())

    path = opts.csv_path or Path(tempfile.gettempdir()) / "finejobs-bulk-import" / f"claims-{opts.claims}.csv"
    started = time.monotonic()
    wrote = ensure_csv(path, opts.claims)
    print(f"claims file: {path} ({opts.claims:,} claims, "
          f"{f'written in {time.monotonic() - started:.1f}s' if wrote else 'already there'})")

    group = queue.group(f"claims-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}")
    probe = Probe(url, first_job_id, opts.claims)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.time()
        time.sleep(opts.idle_seconds)
        probe.phase("idle", t0)

        t0 = time.time()
        with path.open(newline="") as f, tqdm(total=opts.claims, unit="claim", desc="import", file=sys.stdout,
                                              mininterval=0.5) as bar:
            result = import_jobs(queue, review_claim, csv.DictReader(f), group=group, batch=min(10_000, opts.claims),
                                 on_progress=lambda n: bar.update(n - bar.n))
        probe.phase("import", t0)
        sealed = group.seal()
        print(f"imported {result.count:,} claims into group {result.group!r} in {result.seconds:.1f}s "
              f"({result.per_second:,.0f}/s); group total {sealed.total:,}, state {sealed.state}")

        t0 = time.time()
        workers = start_workers(url, opts)
        with tqdm(total=sealed.total, unit="claim", desc="review", file=sys.stdout, mininterval=0.5) as bar:
            while True:
                progress = group.progress()
                bar.update(progress.done - bar.n)
                if progress.finished:
                    break
                dead = [p.returncode for p in workers if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"a worker process exited (exit {dead[0]}); its error is above")
                time.sleep(0.5)
        probe.phase("processing", t0)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(60)
        latencies = probe.stop()
    report(group.progress(), result.count, latencies, opts)
    engine().dispose()
    queue.close()
    return 0


def report(progress: GroupProgress, imported: int, latencies: dict[str, dict[str, list[float]]],
           opts: Options) -> None:
    with engine().connect() as conn:
        decisions: dict[str, int] = dict(conn.execute(sa.text(
            "SELECT decision, count(*) FROM claim_decisions WHERE group_id = :g GROUP BY decision"),
            {"g": progress.id}).tuples().all())
    rate = f", {progress.per_second:,.0f} claims/s" if progress.per_second else ""
    print(f"\ngroup {progress.name}: {progress.state}, {progress.done:,} of {progress.total:,} done{rate} "
          f"({opts.workers} worker process(es) x concurrency {opts.concurrency})")
    print(f"{'imported':<12}{'total':>10}{'succeeded':>11}{'failed':>8}{'expired':>9}{'cancelled':>11}")
    print(f"{imported:<12,}{progress.total:>10,}{progress.succeeded:>11,}{progress.failed:>8,}{progress.expired:>9,}"
          f"{progress.cancelled:>11,}")
    written = sum(decisions.values())
    print("decisions:  " + ", ".join(f"{name} {count:,}" for name, count in sorted(decisions.items()))
          + f" (= {written:,} written)")
    adds_up = imported == progress.total == progress.done and written == progress.succeeded
    print(f"every claim accounted for: {'yes' if adds_up else 'NO'}")

    print("\ninteractive queries from another process (ms):")
    print(f"{'phase':<12}{'query':<16}{'n':>7}{'p50':>8}{'p95':>8}{'p99':>8}")
    for phase, queries in latencies.items():
        for name, samples in sorted(queries.items()):
            if not samples:
                continue
            q = statistics.quantiles(samples, n=100) if len(samples) > 1 else samples * 99
            print(f"{phase:<12}{name:<16}{len(samples):>7}{q[49]:>8.2f}{q[94]:>8.2f}{q[98]:>8.2f}")
