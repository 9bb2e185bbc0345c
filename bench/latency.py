"""Enqueue-to-start latency on an idle worker (LISTEN/NOTIFY wakes it; the poll is 1 s)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import psycopg

from bench.core import _queue, truncate
from bench.noop_app import Noop


@dataclass(frozen=True)
class Latency:
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def bench_latency(url: str, *, samples: int, gap: float = 0.02) -> Latency:
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
        deadline = time.monotonic() + 30
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM finejobs_jobs "
                    "WHERE state = 'succeeded' AND id = ANY(%s)", (ids,)).fetchall()
                if len(rows) == samples or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    finally:
        worker.stop()
        queue.close()
    ms = sorted(float(r[0]) for r in rows)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return Latency(samples=len(ms), p50_ms=cuts[49], p95_ms=cuts[94], p99_ms=cuts[98], max_ms=ms[-1])
