"""Enqueue-to-start latency on an idle worker (LISTEN/NOTIFY wakes it; the poll is 1 s), beside a raw baseline in
the same run: a thread LISTENing on its own connection that, on each notification, claims with one UPDATE ... SKIP
LOCKED on a second connection, fed by a raw INSERT that notifies in the same statement. Both measure from the
enqueuer's clock before its INSERT (created_at) to the claimer's clock when it claims (started_at)."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import psycopg

from bench.core import _queue, truncate
from bench.noop_app import Noop
from finejobs.clock import utcnow


@dataclass(frozen=True)
class Latency:
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    raw: Latency | None = None  # the raw LISTEN + claim baseline of the same run


def bench_latency(url: str, *, samples: int, gap: float = 0.02) -> Latency:
    """finejobs' latency, with the raw baseline measured just before it."""
    raw = raw_latency(url, samples=samples, gap=gap)
    ours = finejobs_latency(url, samples=samples, gap=gap)
    return Latency(ours.samples, ours.p50_ms, ours.p95_ms, ours.p99_ms, ours.max_ms, raw=raw)


_RAW_CLAIM = (
    "WITH picked AS (SELECT id FROM finejobs_jobs WHERE state = 'available' AND shard = %(shard)s "
    "AND run_at <= %(now)s ORDER BY priority DESC, run_at, id LIMIT 4 FOR UPDATE SKIP LOCKED) "
    "UPDATE finejobs_jobs j SET state = 'succeeded', attempt = 1, started_at = %(now)s, finished_at = %(now)s "
    "FROM picked WHERE j.id = picked.id")
_RAW_INSERT = (
    "WITH ins AS (INSERT INTO finejobs_jobs (kind, payload, created_at, run_at) VALUES ('noop', %s::jsonb, %s, %s) "
    "RETURNING shard) SELECT pg_notify('finejobs_bench_raw', shard) FROM ins")


def raw_latency(url: str, *, samples: int, gap: float) -> Latency:
    truncate(url)
    ready, stop = threading.Event(), threading.Event()

    def claimer() -> None:
        with psycopg.connect(url, autocommit=True) as listen, psycopg.connect(url, autocommit=True) as claim:
            listen.execute("LISTEN finejobs_bench_raw")
            ready.set()
            while not stop.is_set():
                for note in listen.notifies(timeout=0.2):
                    claim.execute(_RAW_CLAIM, {"shard": note.payload, "now": utcnow()})

    thread = threading.Thread(target=claimer, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(samples):
                now = utcnow()
                conn.execute(_RAW_INSERT, (f'{{"n": {i}}}', now, now)).fetchall()
                time.sleep(gap)
        return _collect(url, samples)
    finally:
        stop.set()
        thread.join(5)


def finejobs_latency(url: str, *, samples: int, gap: float) -> Latency:
    truncate(url)
    queue, noop = _queue(url)
    worker = queue.worker(concurrency=4, poll_interval=1.0)  # the poll alone would give ~500 ms
    worker.start()
    try:
        time.sleep(0.5)  # let the listener connect
        ids = []
        for i in range(samples):
            ids.append(noop.enqueue(Noop(n=i)).id)
            time.sleep(gap)
        return _collect(url, samples, ids)
    finally:
        worker.stop()
        queue.close()


_STARTED = ("SELECT extract(epoch FROM started_at - created_at) * 1000 FROM finejobs_jobs "
            "WHERE state = 'succeeded' AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))")


def _collect(url: str, samples: int, ids: list[int] | None = None) -> Latency:
    """Wait for the samples (every job, or those of ``ids``) to have started; their created_at -> started_at
    quantiles."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute(_STARTED, {"ids": ids}).fetchall()
            if len(rows) == samples or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    ms = sorted(float(r[0]) for r in rows)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return Latency(samples=len(ms), p50_ms=cuts[49], p95_ms=cuts[94], p99_ms=cuts[98], max_ms=ms[-1])
