"""Shards: claim throughput over 1 vs 16 shards, and one shard's throughput beside 1M waiting jobs elsewhere.

(a) N no-op jobs in one shard, then the same N spread over 16 shards (each with a partition of its own),
    drained by 4 worker processes (the real CLI) serving all 16 shards (by glob, or by name), 4 shards each,
    or the shards they discover (no --shard). Control: 1 shard beside 15 empty partitions.
(b) One worker process (--shard hot) drains a backlog in shard "hot" (a partition of its own): with the
    table otherwise empty, and beside 1M waiting (due) jobs in 15 other shards, in the default partition or
    in partitions of their own. Control: the empty table with 15 empty partitions beside "hot".

Every layout is a database of its own, set up once. A figure is taken as in bench.core (a common future
run_at, the worker processes started and idle beforehand, the figure from the rows' own timestamps) and
repeated; the runs go round the layouts in turn (run 1 of each, then run 2 of each...), so a drift of the
machine's load hits every figure alike. The tables give the best run (other processes on the machine can
only slow a run down) beside the median and the slowest. The raw SKIP LOCKED loop
(k=100, one connection, claim and finish in one statement, no worker process alive) runs on the same
databases, in the same rounds.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
import psycopg.sql

import finejobs
from bench.core import BATCH, REPO_ROOT, _max_id, _queue, _succeeded_span, create_database, drop_database, truncate
from bench.noop_app import Noop

N_SHARDS = 16
WORKER_PROCESSES = 4
N_OTHER_SHARDS = 15
HOT = "hot"
TARGET = 0.90  # the issue: one shard's throughput with 1M pending elsewhere within 10% of the empty table
RAW_K = 100

_RAW_CLAIM = (
    # The raw loop of bench.core, partition-aware: the shard is named in the claim and in the update.
    "WITH picked AS (SELECT id FROM finejobs_jobs WHERE state = 'available' AND shard = %(shard)s "
    "AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT %(k)s FOR UPDATE SKIP LOCKED) "
    "UPDATE finejobs_jobs j SET state = 'succeeded', attempt = 1, finished_at = now() "
    "FROM picked WHERE j.shard = %(shard)s AND j.id = picked.id"
)


@dataclass(frozen=True)
class ShardRow:
    """One line of a shards table: the runs of one measurement, beside a reference and the raw loop.

    The figure is the best run (the fastest): on a shared machine other processes can only slow a run down,
    so the best run is the closest to what the layout allows. The median is given beside it.
    """

    table: str  # "claim" (a) or "noisy" (b)
    name: str
    jobs: int
    runs: tuple[float, ...]  # seconds, one per round
    reference: str  # what "vs" compares with (the 1-shard figure, the empty table)
    reference_runs: tuple[float, ...]  # its seconds, one per round
    raw_runs: tuple[float, ...]  # the raw loop's seconds: on the same layout (b) or on 1 shard (a)
    raw: bool = False  # this row is the raw loop itself

    @property
    def seconds(self) -> float:
        return min(self.runs)

    @property
    def rate(self) -> float:
        return self.jobs / min(self.runs)

    @property
    def median_rate(self) -> float:
        return self.jobs / statistics.median(self.runs)

    @property
    def slowest_rate(self) -> float:
        return self.jobs / max(self.runs)

    @property
    def ratio(self) -> float:
        """Best run against the reference's best run."""
        return min(self.reference_runs) / min(self.runs)

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.reference_runs) / statistics.median(self.runs)

    @property
    def raw_ratio(self) -> float:
        return min(self.raw_runs) / min(self.runs)


@dataclass(frozen=True)
class ShardsResult:
    concurrency: int
    repeats: int  # rounds of (a)
    hot_repeats: int  # rounds of (b)
    claim_jobs: int
    hot_jobs: int
    other_pending: int
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average before and after
    claim: list[ShardRow] = field(default_factory=list)
    noisy: list[ShardRow] = field(default_factory=list)


Enqueue = Callable[[datetime | None], None]


def _log(message: str) -> None:
    print(f"shards: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- worker processes


def _listening(url: str) -> int:
    """Worker processes connected and listening (each worker holds one LISTEN connection)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()").fetchone()
        assert row is not None
        return int(row[0])


@dataclass
class Workers:
    """Worker processes (the real CLI), started and idle.

    While a run's jobs are enqueued the processes are paused (SIGSTOP): idle, a worker serving 16 shards
    sends 16 claims per poll (--poll-interval 0.02, as bench.core), which would slow the enqueue down. They
    resume (SIGCONT) before the jobs come due; if the enqueue overran that (``lead``), the time the jobs were
    due while the workers were paused is not counted, and the next run has a longer lead.
    """

    url: str
    procs: list[subprocess.Popen[bytes]]
    lead: float = 0.0

    def _signal(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    def drain(self, n: int, enqueue: Enqueue) -> float:
        """Seconds for the workers to finish n jobs, all due at one run_at after the enqueue (as bench.core)."""
        self.lead = max(self.lead, 0.3 + n / 40_000)
        after_id = _max_id(self.url)
        self._signal(signal.SIGSTOP)
        try:
            start = finejobs.clock.utcnow()
            run_at = start + timedelta(seconds=self.lead)
            enqueue(run_at)
        finally:
            resumed = finejobs.clock.utcnow()
            self._signal(signal.SIGCONT)
        span = _succeeded_span(self.url, n, timeout=300, after_id=after_id, procs=self.procs)
        paused_while_due = max(0.0, (resumed - run_at).total_seconds())
        if paused_while_due:
            self.lead = 1.5 * (resumed - start).total_seconds()
        return span - paused_while_due

    def stop(self) -> None:
        """End the processes. Their jobs are all finished by then and their shutdown is not measured: a kill
        (not a graceful SIGTERM, about a second each) keeps the many runs short."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(30)
        deadline = time.monotonic() + 10
        while _listening(self.url) and time.monotonic() < deadline:  # their connections gone before a new count
            time.sleep(0.05)


def start_workers(url: str, shard_sets: Sequence[Sequence[str]], concurrency: int) -> Workers:
    """One worker process per shard set (an empty set: every shard), started and idle when this returns."""
    env = dict(os.environ, FINEJOBS_DATABASE_URL=url)
    workers = Workers(url, [])
    for shards in shard_sets:
        args = [sys.executable, "-m", "finejobs", "worker", "--app", "bench.noop_app:queue",
                "--concurrency", str(concurrency), "--poll-interval", "0.02", "--log-level", "WARNING"]
        for shard in shards:
            args += ["--shard", shard]
        workers.procs.append(subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL))
    deadline = time.monotonic() + 60
    while _listening(url) < len(workers.procs):
        dead = [p.returncode for p in workers.procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            workers.stop()
            if dead:
                raise RuntimeError(f"a worker process exited at start (exit {dead[0]}); its error is above")
            raise TimeoutError("the worker processes did not start listening within 60s")
        time.sleep(0.05)
    time.sleep(0.2)  # past LISTEN: the producers are polling
    return workers


# ---------------------------------------------------------------- one measurement


def _enqueuer(queue_kind: finejobs.JobKind[[Noop], None], n: int, shards: Sequence[str]) -> Enqueue:
    """Enqueue n no-op jobs spread evenly over ``shards`` (job i goes to shard i mod len(shards))."""
    def enqueue(run_at: datetime | None) -> None:
        for s, shard in enumerate(shards):
            items = [Noop(n=i) for i in range(s, n, len(shards))]
            for start in range(0, len(items), BATCH):
                queue_kind.enqueue_many(items[start:start + BATCH], shard=shard, run_at=run_at)
    return enqueue


def raw_drain(url: str, shards: Sequence[str], n: int, k: int = RAW_K) -> float:
    """The raw loop: claim k due jobs of one shard with SKIP LOCKED and finish them, shards in turn."""
    done = misses = turn = 0
    # Not prepared (a custom plan every time): a generic plan cannot prune to the shard's partition, and from
    # the statistics of a just-emptied partition the planner may sort the whole backlog on every claim.
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        start = time.perf_counter()
        while done < n and misses < len(shards):
            count = conn.execute(_RAW_CLAIM, {"shard": shards[turn % len(shards)], "k": k}).rowcount
            turn += 1
            done += count
            misses = 0 if count else misses + 1
        seconds = time.perf_counter() - start
    if done < n:
        raise RuntimeError(f"the raw loop found {done} of {n} jobs")
    return seconds


@dataclass
class Layout:
    """A database of the benchmark's own set up for one kind of run; ``clean`` empties what a run adds."""

    label: str
    url: str
    queue: finejobs.Queue
    enqueue: Enqueue
    clean: Callable[[], None]


def _layout(server_url: str, label: str, *, partitions: Sequence[str], shards: Sequence[str], n: int) -> Layout:
    """A database whose shards ``partitions`` have partitions of their own; runs enqueue n jobs over ``shards``."""
    url = create_database(server_url)
    queue, noop = _queue(url)
    layout = Layout(label, url, queue, _enqueuer(noop, n, shards), lambda: truncate(url))
    try:
        queue.store.shard_add(list(partitions))
    except BaseException:
        _close(server_url, [layout])
        raise
    return layout


def _close(server_url: str, layouts: Sequence[Layout]) -> None:
    for layout in layouts:
        layout.queue.close()
        drop_database(server_url, layout.url)


def _run_workers(layout: Layout, shard_sets: Sequence[Sequence[str]], concurrency: int, n: int) -> float:
    """One run: worker processes started on the layout, n jobs drained, processes stopped, the layout cleaned."""
    workers = start_workers(layout.url, shard_sets, concurrency)
    try:
        seconds = workers.drain(n, layout.enqueue)
    finally:
        workers.stop()
    layout.clean()
    return seconds


def _run_raw(layout: Layout, shards: Sequence[str], n: int) -> float:
    layout.enqueue(None)
    seconds = raw_drain(layout.url, shards, n)
    layout.clean()
    return seconds


# ---------------------------------------------------------------- (a) 1 shard vs 16 shards


def _bench_claim(server_url: str, *, n: int, concurrency: int, repeats: int, controls: bool) -> list[ShardRow]:
    names = [f"bench-{i:02d}" for i in range(N_SHARDS)]
    one = names[:1]
    procs = f"{WORKER_PROCESSES} worker processes"
    layouts: list[Layout] = []
    try:
        single = _layout(server_url, "1 shard", partitions=one, shards=one, n=n)
        layouts.append(single)
        beside = _layout(server_url, "1 shard, 16 partitions", partitions=names, shards=one, n=n)
        layouts.append(beside)
        spread = _layout(server_url, "16 shards", partitions=names, shards=names, n=n)
        layouts.append(spread)
        # (label, layout, shards of each worker process; [] = every shard, a control?)
        configs: list[tuple[str, Layout, list[list[str]], bool]] = [
            (f"{procs}, 1 shard (--shard bench-00)", single, [one] * WORKER_PROCESSES, False),
            (f"{procs}, 1 shard, 15 empty partitions beside it (control)", beside, [one] * WORKER_PROCESSES, True),
            (f"{procs}, 16 shards, each worker serves all 16 (--shard 'bench-*')", spread,
             [["bench-*"]] * WORKER_PROCESSES, False),
            (f"{procs}, 16 shards, each worker serves all 16 named (--shard x16)", spread,
             [names] * WORKER_PROCESSES, True),
            (f"{procs}, 16 shards, each worker serves 4 of them (--shard x4)", spread,
             [names[i::WORKER_PROCESSES] for i in range(WORKER_PROCESSES)], False),
            (f"{procs}, 16 shards, workers discover them (no --shard)", spread, [[]] * WORKER_PROCESSES, True),
        ]
        configs = [c for c in configs if controls or not c[3]]
        raws = [(f"raw SKIP LOCKED loop k={RAW_K}, 1 connection, 1 shard", single, one),
                (f"raw SKIP LOCKED loop k={RAW_K}, 1 connection, 16 shards in turn", spread, names)]
        runs: dict[str, list[float]] = {}
        for r in range(repeats):  # run by run, every measurement in turn: drift hits them all alike
            for label, layout, shards in raws:
                runs.setdefault(label, []).append(_run_raw(layout, shards, n))
                _log(f"{label}, run {r + 1}/{repeats}: {n / runs[label][-1]:,.0f} jobs/s")
            for label, layout, shard_sets, _ in configs:
                runs.setdefault(label, []).append(_run_workers(layout, shard_sets, concurrency, n))
                _log(f"{label}, run {r + 1}/{repeats}: {n / runs[label][-1]:,.0f} jobs/s")
    finally:
        _close(server_url, layouts)

    raw_runs, one_runs = tuple(runs[raws[0][0]]), tuple(runs[configs[0][0]])
    rows = []
    for label, _, _ in raws:
        rows.append(ShardRow("claim", label, n, tuple(runs[label]), "raw loop, 1 shard", raw_runs, raw_runs,
                             raw=True))
    for label, *_ in configs:
        rows.append(ShardRow("claim", label, n, tuple(runs[label]), "finejobs, 1 shard", one_runs, raw_runs))
    return rows


# ---------------------------------------------------------------- (b) a hot shard beside 1M waiting jobs


def fill_others(url: str, n: int) -> None:
    """n waiting (due) no-op jobs spread over the other shards, inserted server-side; then settled."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO finejobs_jobs (kind, shard, payload) "
            "SELECT 'noop', 'other-' || lpad((g %% %s)::text, 2, '0'), jsonb_build_object('n', g) "
            "FROM generate_series(1, %s) g", (N_OTHER_SHARDS, n))
        # As bench.bigtable: statistics fresh, hint bits set, dirty pages written (no autovacuum or
        # checkpoint of the fill lands in a measurement).
        conn.execute("VACUUM (FREEZE, ANALYZE) finejobs_jobs")
        conn.execute("CHECKPOINT")


def _hot_layout(server_url: str, label: str, *, n: int, partitions: Sequence[str], other: int) -> Layout:
    """A database with a partition for shard "hot" (and ``partitions``), ``other`` jobs waiting elsewhere."""
    layout = _layout(server_url, label, partitions=[HOT, *partitions], shards=[HOT], n=n)
    hot = psycopg.sql.Identifier(layout.queue.store.shard_partitions()[HOT])

    def clean_hot() -> None:  # the other shards' jobs stay
        with psycopg.connect(layout.url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("TRUNCATE {}").format(hot))
            conn.execute(psycopg.sql.SQL("VACUUM ANALYZE {}").format(hot))

    layout.clean = clean_hot
    try:
        if other:
            fill_others(layout.url, other)
    except BaseException:
        _close(server_url, [layout])
        raise
    return layout


def _bench_noisy(server_url: str, *, n: int, other: int, concurrency: int, repeats: int,
                 controls: bool) -> list[ShardRow]:
    others = [f"other-{i:02d}" for i in range(N_OTHER_SHARDS)]
    million = f"{other / 1e6:g}M" if other >= 100_000 else f"{other:,}"
    layouts: list[Layout] = []
    try:
        layouts.append(_hot_layout(server_url, "empty table (hot partition only)", n=n, partitions=[], other=0))
        layouts.append(_hot_layout(server_url, f"{million} waiting in 15 other shards, default partition", n=n,
                                   partitions=[], other=other))
        layouts.append(_hot_layout(server_url, f"{million} waiting in 15 other shards, a partition each", n=n,
                                   partitions=others, other=other))
        if controls:
            layouts.append(_hot_layout(server_url, "empty table, 15 empty partitions beside (control)", n=n,
                                       partitions=others, other=0))
        runs: dict[str, list[float]] = {}
        raw: dict[str, list[float]] = {}
        for r in range(repeats):  # run by run, every layout in turn: drift hits them all alike
            for layout in layouts:
                raw.setdefault(layout.label, []).append(_run_raw(layout, [HOT], n))
                runs.setdefault(layout.label, []).append(_run_workers(layout, [[HOT]], concurrency, n))
                _log(f"hot shard, {layout.label}, run {r + 1}/{repeats}: {n / runs[layout.label][-1]:,.0f} jobs/s "
                     f"(raw loop {n / raw[layout.label][-1]:,.0f})")
    finally:
        _close(server_url, layouts)

    empty = layouts[0].label
    rows = []
    for layout in layouts:
        fj, rw = tuple(runs[layout.label]), tuple(raw[layout.label])
        rows.append(ShardRow("noisy", f"finejobs, {layout.label}", n, fj, "finejobs, empty table",
                             tuple(runs[empty]), rw))
        rows.append(ShardRow("noisy", f"raw loop k={RAW_K}, {layout.label}", n, rw, "raw loop, empty table",
                             tuple(raw[empty]), rw, raw=True))
    return rows


# ---------------------------------------------------------------- both


def bench_shards(server_url: str, *, claim_jobs: int, hot_jobs: int, other_pending: int, concurrency: int,
                 repeats: int, hot_repeats: int, controls: bool = True) -> ShardsResult:
    """Both questions, each in a database of its own on the server of ``server_url``.

    ``controls``: also the rows that explain the others (1 shard beside 15 empty partitions, all 16 shards by
    name, workers that discover their shards, shard "hot" beside 15 empty partitions); --quick leaves them out.
    """
    load = os.getloadavg()[0]
    claim = _bench_claim(server_url, n=claim_jobs, concurrency=concurrency, repeats=repeats, controls=controls)
    noisy = _bench_noisy(server_url, n=hot_jobs, other=other_pending, concurrency=concurrency,
                         repeats=hot_repeats, controls=controls)
    return ShardsResult(concurrency=concurrency, repeats=repeats, hot_repeats=hot_repeats, claim_jobs=claim_jobs,
                        hot_jobs=hot_jobs, other_pending=other_pending, load=(load, os.getloadavg()[0]), claim=claim,
                        noisy=noisy)
