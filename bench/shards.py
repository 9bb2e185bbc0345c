"""Shards: claim throughput over 1 vs 16 shards, and one shard's throughput beside 1M waiting jobs elsewhere.

(a) N no-op jobs in one shard, then the same N spread over 16 shards (each with a partition of its own),
    drained by 4 worker processes (the real CLI) serving all 16 shards (by glob, or by name), 4 shards each,
    or the shards they discover (no --shard).
(b) One worker process drains a backlog in shard "hot" (a partition of its own): with the table otherwise
    empty, then beside 1M waiting (due) jobs in 15 other shards, in the default partition and in partitions
    of their own, then the empty table again (16 partitions left: the control).

Each figure is taken as in bench.core (a common future run_at, the workers started and idle beforehand, the
figure from the rows' own timestamps) and repeated: the table gives the median and the range of the runs.
The raw SKIP LOCKED loop (k=100, one connection, claim and finish in one statement, no worker) runs on the
same layout in the same run, with no worker process alive.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

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
    """One line of a shards table: the runs of one measurement, beside a reference and the raw loop."""

    table: str  # "claim" (a) or "noisy" (b)
    name: str
    jobs: int
    runs: tuple[float, ...]  # seconds, one per run
    reference: str  # what "vs" compares with (the 1-shard figure, the empty table)
    reference_rate: float
    reference_runs: tuple[float, ...] = ()  # jobs/s of the reference's runs, for the noise check
    raw_rate: float = 0.0  # the raw loop on the same layout (b) or on 1 shard (a)
    raw: bool = False  # this row is the raw loop itself

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else float("inf")

    @property
    def rates(self) -> list[float]:
        return sorted(self.jobs / s for s in self.runs if s)

    @property
    def ratio(self) -> float:
        return self.rate / self.reference_rate if self.reference_rate else float("nan")

    @property
    def raw_ratio(self) -> float:
        return self.rate / self.raw_rate if self.raw_rate else float("nan")

    def ratio_span(self) -> tuple[float, float]:
        """The ratio from the worst and the best pairing of runs (this row's against the reference's)."""
        ref = self.reference_runs or (self.reference_rate,)
        return min(self.rates) / max(ref), max(self.rates) / min(ref)


@dataclass(frozen=True)
class ShardsResult:
    concurrency: int
    repeats: int
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
    """Worker processes (the real CLI), started and idle. ``lead``: how far ahead the jobs of a run are made
    due, so that the enqueue is over before they are; it grows when an enqueue overruns it."""

    url: str
    procs: list[subprocess.Popen[bytes]]
    lead: float = 0.0

    def drain(self, n: int, enqueue: Enqueue, clean: Callable[[], None]) -> float:
        """Seconds for the workers to finish n jobs, all due at one run_at after the enqueue (as bench.core)."""
        self.lead = max(self.lead, 0.3 + n / 20_000)
        while True:
            after_id = _max_id(self.url)
            run_at = finejobs.clock.utcnow() + timedelta(seconds=self.lead)
            enqueue(run_at)
            late = finejobs.clock.utcnow() > run_at - timedelta(seconds=0.1)
            seconds = _succeeded_span(self.url, n, timeout=300, after_id=after_id, procs=self.procs)
            if not late:
                return seconds
            # The workers started before the enqueue was over: discard the run, clean up, again.
            _log(f"the enqueue overran the {self.lead:.1f}s lead: run discarded, again with {self.lead * 2:.1f}s")
            self.lead *= 2
            clean()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
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
    with psycopg.connect(url, autocommit=True) as conn:
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


def _median_rate(n: int, runs: Sequence[float]) -> float:
    return n / statistics.median(runs)


# ---------------------------------------------------------------- (a) 1 shard vs 16 shards


def _bench_claim(server_url: str, *, n: int, concurrency: int, repeats: int, controls: bool) -> list[ShardRow]:
    url = create_database(server_url)
    names = [f"bench-{i:02d}" for i in range(N_SHARDS)]
    one = names[:1]
    queue, noop = _queue(url)
    try:
        queue.store.shard_add(one)

        def workers_runs(label: str, shard_sets: Sequence[Sequence[str]], shards: Sequence[str]) -> tuple[float, ...]:
            enqueue = _enqueuer(noop, n, shards)
            truncate(url)
            workers = start_workers(url, shard_sets, concurrency)
            runs = []
            try:
                for r in range(repeats):
                    runs.append(workers.drain(n, enqueue, lambda: truncate(url)))
                    _log(f"{label}, run {r + 1}/{repeats}: {n / runs[-1]:,.0f} jobs/s")
                    truncate(url)
            finally:
                workers.stop()
            return tuple(runs)

        def raw_runs(label: str, shards: Sequence[str]) -> tuple[float, ...]:
            enqueue = _enqueuer(noop, n, shards)
            runs = []
            for r in range(repeats):
                truncate(url)
                enqueue(None)
                runs.append(raw_drain(url, shards, n))
                _log(f"{label}, run {r + 1}/{repeats}: {n / runs[-1]:,.0f} jobs/s")
            truncate(url)
            return tuple(runs)

        glob = [["bench-*"]] * WORKER_PROCESSES
        every = [names] * WORKER_PROCESSES
        quarters = [names[i::WORKER_PROCESSES] for i in range(WORKER_PROCESSES)]
        raw_one = raw_runs("raw loop, 1 shard", one)
        fj_one = workers_runs("1 shard", [one] * WORKER_PROCESSES, one)
        queue.store.shard_add(names[1:])
        raw_all = raw_runs("raw loop, 16 shards", names)
        fj_one_16 = workers_runs("1 shard, 16 partitions", [one] * WORKER_PROCESSES, one) if controls else ()
        fj_glob = workers_runs("16 shards, all 16 per worker by glob", glob, names)
        fj_every = workers_runs("16 shards, all 16 per worker by name", every, names) if controls else ()
        fj_quarters = workers_runs("16 shards, 4 per worker", quarters, names)
        fj_discover = workers_runs("16 shards, discovered", [[]] * WORKER_PROCESSES, names) if controls else ()
    finally:
        queue.close()
        drop_database(server_url, url)

    raw_rate = _median_rate(n, raw_one)
    raw_rates = tuple(sorted(n / s for s in raw_one))
    one_rate = _median_rate(n, fj_one)
    one_rates = tuple(sorted(n / s for s in fj_one))
    procs = f"{WORKER_PROCESSES} worker processes"

    def row(name: str, runs: tuple[float, ...], *, raw: bool = False) -> ShardRow:
        return ShardRow("claim", name, n, runs, "raw loop, 1 shard" if raw else "finejobs, 1 shard",
                        raw_rate if raw else one_rate, raw_rates if raw else one_rates, raw_rate, raw=raw)

    rows = [
        row(f"raw SKIP LOCKED loop k={RAW_K}, 1 connection, 1 shard", raw_one, raw=True),
        row(f"raw SKIP LOCKED loop k={RAW_K}, 1 connection, 16 shards in turn", raw_all, raw=True),
        row(f"{procs}, 1 shard (--shard bench-00)", fj_one),
        row(f"{procs}, 1 shard, 15 empty partitions beside it (control)", fj_one_16),
        row(f"{procs}, 16 shards, each worker serves all 16 (--shard 'bench-*')", fj_glob),
        row(f"{procs}, 16 shards, each worker serves all 16 named (--shard x16)", fj_every),
        row(f"{procs}, 16 shards, each worker serves 4 of them (--shard x4)", fj_quarters),
        row(f"{procs}, 16 shards, workers discover them (no --shard)", fj_discover),
    ]
    return [r for r in rows if r.runs]  # without controls, three are not measured


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


def _bench_noisy(server_url: str, *, n: int, other: int, concurrency: int, repeats: int,
                 controls: bool) -> list[ShardRow]:
    url = create_database(server_url)
    others = [f"other-{i:02d}" for i in range(N_OTHER_SHARDS)]
    queue, noop = _queue(url)
    enqueue = _enqueuer(noop, n, [HOT])
    try:
        queue.store.shard_add([HOT])
        hot_partition = queue.store.shard_partitions()[HOT]

        def clean_hot() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'TRUNCATE "{hot_partition}"')
                conn.execute(f'VACUUM ANALYZE "{hot_partition}"')

        def phase(label: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
            """The hot backlog drained by one worker process (--shard hot), then by the raw loop."""
            clean_hot()
            workers = start_workers(url, [[HOT]], concurrency)
            runs = []
            try:
                for r in range(repeats):
                    runs.append(workers.drain(n, enqueue, clean_hot))
                    _log(f"hot shard, {label}, run {r + 1}/{repeats}: {n / runs[-1]:,.0f} jobs/s")
                    clean_hot()
            finally:
                workers.stop()
            raw = []
            for r in range(repeats):
                enqueue(None)
                raw.append(raw_drain(url, [HOT], n))
                _log(f"raw loop, hot shard, {label}, run {r + 1}/{repeats}: {n / raw[-1]:,.0f} jobs/s")
                clean_hot()
            return tuple(runs), tuple(raw)

        empty = phase("empty table")
        fill_others(url, other)
        in_default = phase(f"{other:,} waiting in the default partition")
        truncate(url)
        queue.store.shard_add(others)
        fill_others(url, other)
        in_own = phase(f"{other:,} waiting in 15 partitions")
        again: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
        if controls:
            truncate(url)
            again = phase("empty table again, 16 partitions")
    finally:
        queue.close()
        drop_database(server_url, url)

    fj_ref, raw_ref = _median_rate(n, empty[0]), _median_rate(n, empty[1])
    fj_ref_rates = tuple(sorted(n / s for s in empty[0]))
    raw_ref_rates = tuple(sorted(n / s for s in empty[1]))
    million = f"{other / 1e6:g}M" if other >= 100_000 else f"{other:,}"
    phases = [
        ("empty table (hot partition only)", empty),
        (f"{million} waiting in 15 other shards, default partition", in_default),
        (f"{million} waiting in 15 other shards, a partition each", in_own),
    ]
    if controls:
        phases.append(("empty table again, 16 partitions (control)", again))
    rows = []
    for label, (fj, raw) in phases:
        raw_rate = _median_rate(n, raw)
        rows.append(ShardRow("noisy", f"finejobs, {label}", n, fj, "finejobs, empty table", fj_ref, fj_ref_rates,
                             raw_rate))
        rows.append(ShardRow("noisy", f"raw loop k={RAW_K}, {label}", n, raw, "raw loop, empty table", raw_ref,
                             raw_ref_rates, raw_rate, raw=True))
    return rows


# ---------------------------------------------------------------- both


def bench_shards(server_url: str, *, claim_jobs: int, hot_jobs: int, other_pending: int, concurrency: int,
                 repeats: int, controls: bool = True) -> ShardsResult:
    """Both questions, each in a database of its own on the server of ``server_url``.

    ``controls``: also the rows that explain the others (1 shard beside 15 empty partitions, all 16 shards by
    name, workers that discover their shards, the empty table again with 16 partitions); --quick leaves them
    out.
    """
    load = os.getloadavg()[0]
    claim = _bench_claim(server_url, n=claim_jobs, concurrency=concurrency, repeats=repeats, controls=controls)
    noisy = _bench_noisy(server_url, n=hot_jobs, other=other_pending, concurrency=concurrency, repeats=repeats,
                         controls=controls)
    return ShardsResult(concurrency=concurrency, repeats=repeats, claim_jobs=claim_jobs, hot_jobs=hot_jobs,
                        other_pending=other_pending, load=(load, os.getloadavg()[0]), claim=claim, noisy=noisy)
