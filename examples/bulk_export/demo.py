"""Run a bulk export end to end: fake resources in, NDJSON files and a report out, per-step progress shown."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from examples.bulk_export.app import RESOURCE_TYPES, ExportParams, export, queue
from finejobs.pipeline_info import PipelineInfo
from finejobs.store import libpq_url

DEMO_DATABASE = "finejobs_bulk_export"


@dataclass(frozen=True)
class Options:
    resources: int = 20_000
    workers: int = 2
    concurrency: int = 4
    out: str | None = None
    database_url: str | None = None
    seed: int = 7


def resolve_database_url(explicit: str | None) -> str:
    """--database-url, else FINEJOBS_DATABASE_URL, else a demo database on the local or embedded server."""
    url = explicit or os.environ.get("FINEJOBS_DATABASE_URL")
    if url:
        return url
    from finejobs import devdb

    return devdb.create_database(devdb.discover_server_url(), name=DEMO_DATABASE, exist_ok=True)


def create_resources(url: str, n: int, seed: int) -> dict[str, int]:
    """The app's table of fake FHIR resources, refilled with ``n`` rows; returns the count per type."""
    rng = random.Random(seed)
    weights = (1, 6, 2, 2, 3)  # patients are few, observations many
    now = datetime.now(UTC)
    rows = []
    for rid in range(1, n + 1):
        rtype = rng.choices(RESOURCE_TYPES, weights)[0]
        body = {"resourceType": rtype, "id": str(rid), "meta": {"versionId": "1"},
                "subject": {"reference": f"Patient/{rng.randint(1, max(1, n // 10))}"}}
        rows.append((rid, rtype, now - timedelta(minutes=rng.randint(0, 10_000)), json.dumps(body)))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bulk_export_resources (id bigint PRIMARY KEY, resource_type text "
                     "NOT NULL, last_updated timestamptz NOT NULL, body jsonb NOT NULL)")
        conn.execute("TRUNCATE bulk_export_resources")
        with conn.cursor() as cur, cur.copy("COPY bulk_export_resources (id, resource_type, last_updated, body) "
                                            "FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    counts: dict[str, int] = {}
    for _, rtype, _, _ in rows:
        counts[rtype] = counts.get(rtype, 0) + 1
    return counts


def run(opts: Options) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    url = resolve_database_url(opts.database_url)
    queue.configure(url=url, pool_size=opts.concurrency * opts.workers + 4)
    queue.migrate()
    made_out = opts.out is None
    out = Path(opts.out or tempfile.mkdtemp(prefix="bulk-export-"))
    started = time.monotonic()
    expected = create_resources(url, opts.resources, opts.seed)
    print(f"{opts.resources} resources in bulk_export_resources: "
          + ", ".join(f"{t} {n}" for t, n in sorted(expected.items())))
    workers = [queue.worker(concurrency=opts.concurrency, poll_interval=0.1, maintenance_interval=0.5)
               for _ in range(opts.workers)]
    for worker in workers:
        worker.start()
    try:
        run = export.start(ExportParams(out_dir=str(out)))
        print(f"export run {run.id} started; files in {out}")
        last = ""
        while True:
            info = run.progress()
            line = _progress_line(info)
            if line != last:
                print(line, flush=True)
                last = line
            if info.finished:
                break
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.stop()
    elapsed = time.monotonic() - started
    print()
    print(info.table())
    print()
    code = _report(info, out, expected, elapsed)
    queue.close()
    if made_out and code == 0:
        shutil.rmtree(out, ignore_errors=True)
    return code


def _progress_line(info: PipelineInfo) -> str:
    return "  ".join(f"{s.name} {s.chunks_done}/{s.chunks_total}" for s in info.steps) + f"  [{info.state}]"


def _report(info: PipelineInfo, out: Path, expected: dict[str, int], elapsed: float) -> int:
    if info.state != "succeeded":
        print(f"export {info.state}: {info.error}")
        return 1
    result = info.result
    print("report: " + json.dumps({k: v for k, v in result.items() if k != "files"}))
    print(f"{'type':<20} {'resources':>10} {'files':>6}")
    for rtype, count in result["by_type"].items():
        print(f"{rtype:<20} {count:>10} {result['files_by_type'][rtype]:>6}")
    lines: dict[str, int] = {}
    for name in result["files"]:
        rtype = name.split("-", 1)[0]
        with (out / name).open(encoding="utf-8") as f:
            lines[rtype] = lines.get(rtype, 0) + sum(1 for _ in f)
    ok = lines == expected == result["by_type"]
    print(f"{len(result['files'])} files, {sum(lines.values())} lines: "
          f"{'every resource exported once' if ok else 'MISMATCH with the table'} in {elapsed:.1f} s")
    return 0 if ok else 1
