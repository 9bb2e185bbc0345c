"""python -m bench [core] [shards] [admin] [console] [import] [groups] [processes]: finejobs against a raw-SQL
baseline on one database, in one run.

Sections: core (enqueue, processing, latency, big table), shards (1 vs 16 shards; one shard beside 1M
waiting jobs in others) and admin (the operations API's pages, counts and stats on 1M finished + 100k
waiting jobs) and console (every page, REST call and /metrics over HTTP on 2M finished + 200k waiting
jobs), import (1M jobs through import_jobs, COPY, against raw COPYs of the same rows) and groups (no-op
jobs as members of a group against the same jobs as plain ones); no argument runs them all. Prints
markdown tables, writes bench/results/bench.json, bench/results/throughput.png and, for admin, console,
import, groups and processes, bench/results/admin.json, console.json, imports.json, groups.json and processes.json.
Processes: finejobs worker --processes 1 against --processes 2 (one command each), beside the raw loop in 1
and 2 processes.
Memory: the RSS of a worker at concurrency 50 beside 1M waiting jobs, of a raw SQL loop and of an idle process
(bench/memory.py).
Schedules: 100k of 1M schedules due at one instant, until all their jobs exist with 1 and 2 worker processes,
against a raw INSERT ... SELECT of the same jobs; the job claim beside 1M schedules (bench/schedules.py).
Citus (by hand, not in "all": FINEJOBS_CITUS_URL names a Citus coordinator): enqueue and processing with 1, 2
and 4 worker processes over 8 shards, on the cluster beside plain PostgreSQL (bench/citus.py).
Absolute figures drift on a shared machine; the ratios to the baseline measured in the same run hold.
"""

from __future__ import annotations

from pathlib import Path

import click
import psycopg

from bench.admin import AdminResult, admin_markdown, bench_admin, write_admin_json
from bench.bigtable import bench_big_table
from bench.citus import bench_citus, citus_markdown
from bench.console import bench_console, console_markdown
from bench.core import Row, bench_enqueue, bench_processing, bench_raw, create_database, drop_database
from bench.grouped import GroupsResult, bench_groups, groups_markdown, write_groups_json
from bench.imports import ImportsResult, bench_imports, imports_markdown, write_imports_json
from bench.latency import Latency, bench_latency
from bench.memory import MemoryResult, bench_memory, memory_markdown, write_memory_json
from bench.processes import ProcessesResult, bench_processes, processes_markdown, write_processes_json
from bench.report import header, markdown, shards_markdown, write_json, write_png
from bench.schedules import SchedulesResult, bench_schedules, schedules_markdown, write_schedules_json
from bench.shards import ShardsResult, bench_shards
from finejobs.store import libpq_url

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("core", "shards", "admin", "console", "import", "groups", "processes", "schedules", "memory", "citus")
BY_HAND = ("citus",)  # not in "every section": it needs a Citus cluster (FINEJOBS_CITUS_URL)


@click.command()
@click.argument("sections", nargs=-1, type=click.Choice(SECTIONS))
@click.option("--database-url", envvar="FINEJOBS_DATABASE_URL", default=None,
              help="Server to benchmark on (a database is created there and dropped) [default: discovered].")
@click.option("--single", "n_single", default=2000, show_default=True, help="Jobs enqueued one by one.")
@click.option("--bulk", "n_bulk", default=100_000, show_default=True, help="Jobs enqueued in bulk.")
@click.option("--process", "n_process", default=20_000, show_default=True, help="No-op jobs per processing run.")
@click.option("--concurrency", "concurrencies", multiple=True, type=int, default=(1, 10, 50), show_default=True,
              help="Handlers per worker process (repeat).")
@click.option("--processes", "process_counts", multiple=True, type=int, default=(1, 2), show_default=True,
              help="Worker processes (repeat).")
@click.option("--latency-samples", default=200, show_default=True, help="Jobs for the latency measurement.")
@click.option("--big-rows", default=1_000_000, show_default=True,
              help="Finished rows, and as many scheduled rows, for the big-table run (0 skips it).")
@click.option("--shard-jobs", default=20_000, show_default=True,
              help="Shards: no-op jobs per run over 1 and over 16 shards (4 worker processes).")
@click.option("--hot-jobs", default=20_000, show_default=True,
              help="Shards: the backlog of shard 'hot' per run (1 worker process).")
@click.option("--other-pending", default=1_000_000, show_default=True,
              help="Shards: waiting jobs in 15 other shards beside shard 'hot'.")
@click.option("--repeats", default=3, show_default=True, help="Shards: runs per figure of (a), 1 vs 16 shards.")
@click.option("--hot-repeats", default=5, show_default=True,
              help="Shards: runs per figure of (b), shard 'hot' beside waiting jobs (its verdict).")
@click.option("--admin-finished", default=1_000_000, show_default=True,
              help="Admin: finished jobs in the table (mixed succeeded, failed, cancelled, expired).")
@click.option("--admin-waiting", default=100_000, show_default=True, help="Admin: waiting jobs in the table.")
@click.option("--admin-repeats", default=40, show_default=True, help="Admin: rounds of every call (p50, p95).")
@click.option("--console-finished", default=2_000_000, show_default=True, help="Console: finished jobs in the table.")
@click.option("--console-waiting", default=200_000, show_default=True, help="Console: waiting jobs in the table.")
@click.option("--console-repeats", default=30, show_default=True, help="Console: rounds of every call (p50, p95).")
@click.option("--import-jobs", default=1_000_000, show_default=True,
              help="Import: jobs through import_jobs, and as many rows in each raw COPY baseline.")
@click.option("--group-jobs", default=20_000, show_default=True, help="Groups: no-op jobs per run, plain and grouped.")
@click.option("--group-repeats", default=3, show_default=True, help="Groups: runs of each kind (best and median).")
@click.option("--procs-jobs", default=20_000, show_default=True,
              help="Processes: no-op jobs per run of finejobs worker --processes 1 and 2, and of the raw loops.")
@click.option("--procs-concurrency", default=50, show_default=True,
              help="Processes: --concurrency of each worker process.")
@click.option("--procs-repeats", default=3, show_default=True, help="Processes: rounds of runs (best and median).")
@click.option("--memory-waiting", default=1_000_000, show_default=True,
              help="Memory: waiting jobs in the table while each process is sampled.")
@click.option("--memory-seconds", default=15.0, show_default=True, help="Memory: seconds each process is sampled.")
@click.option("--citus-url", envvar="FINEJOBS_CITUS_URL", default=None,
              help="Citus: a Citus coordinator (a database is made on its cluster and dropped).")
@click.option("--citus-single", default=500, show_default=True, help="Citus: jobs enqueued one by one on each engine.")
@click.option("--citus-bulk", default=20_000, show_default=True, help="Citus: jobs enqueued in bulk on each engine.")
@click.option("--citus-jobs", default=5_000, show_default=True,
              help="Citus: no-op jobs per processing run (1, 2 and 4 worker processes, 8 shards).")
@click.option("--citus-repeats", default=1, show_default=True, help="Citus: rounds of runs (the best is shown).")
@click.option("--quick", is_flag=True, help="Tiny sizes: a smoke test, not a measurement.")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True,
              help="Folder for bench.json and throughput.png.")
def main(sections: tuple[str, ...], database_url: str | None, n_single: int, n_bulk: int, n_process: int,
         concurrencies: tuple[int, ...], process_counts: tuple[int, ...], latency_samples: int, big_rows: int,
         shard_jobs: int, hot_jobs: int, other_pending: int, repeats: int, hot_repeats: int, admin_finished: int,
         admin_waiting: int, admin_repeats: int, console_finished: int, console_waiting: int, console_repeats: int,
         import_jobs: int, group_jobs: int, group_repeats: int, procs_jobs: int, procs_concurrency: int,
         procs_repeats: int, memory_waiting: int, memory_seconds: float, citus_url: str | None, citus_single: int,
         citus_bulk: int, citus_jobs: int, citus_repeats: int, quick: bool, out: Path) -> None:
    """Measure enqueue, processing, latency, big-table and shard throughput against a raw psycopg baseline.

    SECTIONS: core, shards, admin, console, import, groups, processes, schedules, memory (default: all of
    these), citus (by hand, with FINEJOBS_CITUS_URL: bench/citus.py)."""
    if database_url is None:
        from finejobs.devdb import discover_server_url

        database_url = discover_server_url()
    if quick:
        n_single, n_bulk, n_process, latency_samples, big_rows = 50, 1000, 300, 20, 2000
        concurrencies, process_counts = (4,), (1,)
        shard_jobs, hot_jobs, other_pending, repeats, hot_repeats = 1000, 1000, 50_000, 1, 1
        admin_finished, admin_waiting, admin_repeats = 20_000, 2_000, 5
        console_finished, console_waiting, console_repeats = 20_000, 2_000, 3
        import_jobs, group_jobs, group_repeats = 5_000, 200, 1
        procs_jobs, procs_concurrency, procs_repeats = 1000, 10, 1
        memory_waiting, memory_seconds = 20_000, 2.0
    selected = set(sections or [s for s in SECTIONS if s not in BY_HAND])
    if "citus" in selected and not citus_url:
        raise click.UsageError("the citus section needs a Citus coordinator: set FINEJOBS_CITUS_URL or --citus-url")
    if quick:
        citus_single, citus_bulk, citus_jobs = 50, 1000, 300
    with psycopg.connect(libpq_url(database_url)) as conn:
        server = "PostgreSQL " + str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    title = header(server)
    rows: list[Row] = []
    latency: Latency | None = None
    shards: ShardsResult | None = None
    admin: AdminResult | None = None
    console: AdminResult | None = None
    imports: ImportsResult | None = None
    groups: GroupsResult | None = None
    procs: ProcessesResult | None = None
    memory: MemoryResult | None = None
    scheds: SchedulesResult | None = None  # schedules: 1M stored, 100k due at one instant (--quick: 20k, 2k)
    if "core" in selected:
        url = create_database(database_url)
        try:
            rows = bench_enqueue(url, n_single=n_single, n_bulk=n_bulk)
            raw = bench_raw(url, n_process)
            rows += [raw[1], raw[100]]
            rows += bench_processing(url, n=n_process, concurrencies=concurrencies, process_counts=process_counts,
                                     baseline=raw[100])
            latency = bench_latency(url, samples=latency_samples)
            if big_rows:
                rows += bench_big_table(url, n=n_process, concurrency=max(concurrencies), finished=big_rows,
                                        scheduled=big_rows)
        finally:
            drop_database(database_url, url)
    if "shards" in selected:
        shards = bench_shards(database_url, claim_jobs=shard_jobs, hot_jobs=hot_jobs, other_pending=other_pending,
                              concurrency=max(concurrencies), repeats=repeats, hot_repeats=hot_repeats,
                              controls=not quick)
    if "admin" in selected:
        admin = bench_admin(database_url, finished=admin_finished, waiting=admin_waiting, repeats=admin_repeats)
    if "console" in selected:
        console = bench_console(database_url, finished=console_finished, waiting=console_waiting,
                                repeats=console_repeats)
    if "import" in selected:
        imports = bench_imports(database_url, n=import_jobs)
    if "groups" in selected:
        groups = bench_groups(database_url, n=group_jobs, concurrency=max(concurrencies), repeats=group_repeats)
    if "processes" in selected:
        procs = bench_processes(database_url, n=procs_jobs, concurrency=procs_concurrency, repeats=procs_repeats)
    if "schedules" in selected:
        scheds = bench_schedules(database_url, total=20_000 if quick else 1_000_000, due=2_000 if quick else 100_000,
                                 claim_jobs=1_000 if quick else 20_000, repeats=1 if quick else 3,
                                 lead=2.0 if quick else 8.0)
    print(title)
    if "core" in selected:
        print()
        print(markdown(rows, latency))
    if shards is not None:
        print()
        print(shards_markdown(shards))
    if admin is not None:
        print()
        print(admin_markdown(admin))
        write_admin_json(out / "admin.json", title, admin)
    if console is not None:
        print()
        print(console_markdown(console))
        write_admin_json(out / "console.json", title, console)
    if imports is not None:
        print()
        print(imports_markdown(imports))
        write_imports_json(out / "imports.json", title, imports)
    if groups is not None:
        print()
        print(groups_markdown(groups))
        write_groups_json(out / "groups.json", title, groups)
    if procs is not None:
        print()
        print(processes_markdown(procs))
        write_processes_json(out / "processes.json", title, procs)
    if scheds is not None:
        print()
        print(schedules_markdown(scheds))
        write_schedules_json(out / "schedules.json", title, scheds)
    if "citus" in selected:
        assert citus_url is not None
        citus = bench_citus(database_url, citus_url, n_single=citus_single, n_bulk=citus_bulk, n_process=citus_jobs,
                            concurrency=max(concurrencies), repeats=citus_repeats)
        print()
        print(citus_markdown(citus))
    if "memory" in selected:
        memory = bench_memory(database_url, waiting=memory_waiting, seconds=memory_seconds)
        print()
        print(memory_markdown(memory))
        write_memory_json(out / "memory.json", title, memory)
    if rows or latency is not None or shards is not None:
        write_json(out / "bench.json", title, rows, latency, shards)
    print()
    png = write_png(out / "throughput.png", title, rows) if rows else "no PNG (the core section did not run)"
    written = [str(out / name) for name, done in (("bench.json", rows or latency is not None or shards is not None),
                                                   ("admin.json", admin is not None),
                                                   ("console.json", console is not None),
                                                   ("imports.json", imports is not None),
                                                   ("groups.json", groups is not None),
                                                   ("processes.json", procs is not None),
                                                   ("schedules.json", scheds is not None),
                                                   ("memory.json", memory is not None)) if done]
    print(f"wrote {', '.join(written) or 'nothing'}; {png}")


if __name__ == "__main__":
    main()
