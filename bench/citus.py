"""Citus: enqueue and processing on a Citus cluster beside the same on plain PostgreSQL, in one run.

``python -m bench citus`` (by hand: FINEJOBS_CITUS_URL names a Citus coordinator, e.g.
postgresql://postgres@127.0.0.1:9700/postgres; the plain server is --database-url or the discovered one).
On each engine, in a database of the benchmark's own (on Citus: made on every node, the workers added, the
job table distributed by `finejobs migrate`):

- enqueue: jobs one by one, then in bulk (enqueue_many, batches of bench.core.BATCH), spread over 8 shards;
- processing: no-op jobs over 8 shards drained by 1, 2 and 4 worker processes (the real CLI, no --shard:
  each serves every shard it finds), timed as bench.core and bench.shards do (a common future run_at, the
  processes started and idle beforehand, the figure from the rows' own timestamps: bench.shards.Workers).

Each figure is the best of ``repeats`` runs, the engines taking turns. When the whole cluster runs on one
machine the figures measure Citus's overhead (a coordinator in front of two workers), not its scale.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

import finejobs
from bench.core import BATCH, _queue, _timed, truncate
from bench.core import create_database as create_plain_database
from bench.core import drop_database as drop_plain_database
from bench.noop_app import Noop
from bench.shards import _enqueuer, start_workers
from finejobs.store import libpq_url

SHARDS = [f"district-{i}" for i in range(8)]
PROCESS_COUNTS = (1, 2, 4)
CITUS_URL_ENV = "FINEJOBS_CITUS_URL"


# ---------------------------------------------------------------- Citus databases


def _user(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(libpq_url(url)).get("user", "postgres"))


def create_citus_database(citus_url: str, prefix: str = "finejobs_citus") -> str:
    """A new database on the cluster of ``citus_url``'s coordinator: created with Citus's propagation (so on
    every node), the citus extension in it on every node, the coordinator and the workers added. Not
    migrated. Returns its URL."""
    dbname = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(citus_url), autocommit=True) as conn:
        nodes = conn.execute("SELECT nodename, nodeport, groupid FROM pg_dist_node WHERE noderole = 'primary' "
                             "ORDER BY groupid").fetchall()
        conn.execute("SET citus.enable_create_database_propagation = on")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    for host, port, _group in nodes:
        with psycopg.connect(host=host, port=port, dbname=dbname, user=_user(citus_url), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
    info = psycopg.conninfo.conninfo_to_dict(libpq_url(citus_url))
    url = f"postgresql://{_user(citus_url)}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{dbname}"
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for host, port, group in nodes:
            if group == 0:
                conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (host, port))
        for host, port, group in nodes:
            if group != 0:
                conn.execute("SELECT citus_add_node(%s, %s)", (host, port))
    return url


def drop_citus_database(citus_url: str, url: str) -> None:
    """Drop it on every node (the coordinator's cached connections to the workers are ended first)."""
    dbname = str(psycopg.conninfo.conninfo_to_dict(libpq_url(url))["dbname"])
    with psycopg.connect(libpq_url(citus_url), autocommit=True) as conn:
        nodes = conn.execute("SELECT nodename, nodeport FROM pg_dist_node").fetchall()
    for attempt in range(10):
        for host, port in nodes:
            with psycopg.connect(host=host, port=port, dbname="postgres", user=_user(citus_url),
                                 autocommit=True) as node:
                node.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
        try:
            with psycopg.connect(libpq_url(citus_url), autocommit=True) as conn:
                conn.execute("SET citus.enable_create_database_propagation = on")
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 9:
                raise
            time.sleep(0.5)


# ---------------------------------------------------------------- the measurements


@dataclass
class EngineRuns:
    """Every run's seconds of one engine, by measurement."""

    engine: str
    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.runs.setdefault(name, []).append(seconds)

    def best(self, name: str) -> float:
        return min(self.runs[name])


@dataclass
class CitusResult:
    plain: EngineRuns
    citus: EngineRuns
    jobs: dict[str, int]
    server: str
    citus_server: str


def _single(url: str, n: int) -> float:
    queue, noop = _queue(url)
    try:
        return _timed(lambda: [noop.enqueue(Noop(n=i), shard=SHARDS[i % len(SHARDS)]) for i in range(n)])
    finally:
        queue.close()


def _bulk(url: str, n: int) -> float:
    queue, noop = _queue(url)
    specs = [finejobs.JobSpec(Noop(n=i), shard=SHARDS[i % len(SHARDS)]) for i in range(n)]
    try:
        return _timed(lambda: [noop.enqueue_many(specs[s:s + BATCH]) for s in range(0, n, BATCH)])
    finally:
        queue.close()


def _process(url: str, n: int, processes: int, concurrency: int) -> float:
    queue, noop = _queue(url)
    try:
        workers = start_workers(libpq_url(url), [[] for _ in range(processes)], concurrency)
        try:
            return workers.drain(n, _enqueuer(noop, n, SHARDS))
        finally:
            workers.stop()
    finally:
        queue.close()


def _label(processes: int) -> str:
    return f"processing, {processes} worker process{'es' if processes > 1 else ''}"


def _round(url: str, runs: EngineRuns, *, n_single: int, n_bulk: int, n_process: int, concurrency: int,
           process_counts: Sequence[int]) -> None:
    plain = libpq_url(url)
    truncate(plain)
    runs.add("enqueue one by one", _single(url, n_single))
    truncate(plain)
    runs.add("enqueue in bulk", _bulk(url, n_bulk))
    for processes in process_counts:
        truncate(plain)
        runs.add(_label(processes), _process(url, n_process, processes, concurrency))
    truncate(plain)


def _version(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT current_setting('server_version'), "
                           "(SELECT extversion FROM pg_extension WHERE extname = 'citus')").fetchone()
    assert row is not None
    return f"PostgreSQL {row[0]}" + (f", Citus {row[1]}" if row[1] else "")


def bench_citus(server_url: str, citus_url: str, *, n_single: int, n_bulk: int, n_process: int,
                concurrency: int, repeats: int, process_counts: Sequence[int] = PROCESS_COUNTS) -> CitusResult:
    """The same runs on a plain database of ``server_url``'s server and on a Citus database of ``citus_url``'s
    cluster, the engines taking turns; see the module docstring."""
    plain_url = create_plain_database(server_url)
    citus_db = create_citus_database(citus_url, prefix="finejobs_bench_citus")
    try:
        q = finejobs.Queue(citus_db)
        q.migrate()  # the job table distributed by shard
        q.close()
        result = CitusResult(EngineRuns("PostgreSQL"), EngineRuns("Citus"),
                             {"enqueue one by one": n_single, "enqueue in bulk": n_bulk,
                              **{_label(p): n_process for p in process_counts}},
                             _version(plain_url), _version(citus_db))
        for _ in range(repeats):
            for url, runs in ((plain_url, result.plain), (citus_db, result.citus)):
                _round(url, runs, n_single=n_single, n_bulk=n_bulk, n_process=n_process, concurrency=concurrency,
                       process_counts=process_counts)
        return result
    finally:
        drop_plain_database(server_url, plain_url)
        drop_citus_database(citus_url, citus_db)


def citus_markdown(result: CitusResult) -> str:
    lines = [f"Citus: {result.citus_server} (coordinator and workers on this machine) beside {result.server}; "
             f"8 shards; best of {len(next(iter(result.plain.runs.values())))} run(s) each.", "",
             "| measurement | jobs | PostgreSQL jobs/s | Citus jobs/s | Citus / PostgreSQL |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, jobs in result.jobs.items():
        plain, citus = jobs / result.plain.best(name), jobs / result.citus.best(name)
        lines.append(f"| {name} | {jobs} | {plain:,.0f} | {citus:,.0f} | {citus / plain:.2f} |")
    return "\n".join(lines)
