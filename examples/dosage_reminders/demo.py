"""Run the dosage-reminders story end to end and print what happened to every alert.

1. The app's own ``demo_patients`` table gets N patients with a dose in the next hour, spread over districts.
2. The hourly planner (a recurring schedule, run now) reads the doses due and enqueues one alert job per
   dose, in the same transaction (unique key = patient + dose time, so planning twice creates nothing new;
   expiry = dose time + 1 h).
3. Workers, one per group of district shards, send the alerts through a local gateway that fails a share
   of requests; failures are retried with backoff, a few late doses expire instead of being sent.
4. A summary per district: sent, retried, expired, failed, with timings and the reason for each failure.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from tqdm import tqdm

import finejobs
from examples.dosage_reminders.app import queue, shard_for
from examples.dosage_reminders.gateway import Gateway

DEMO_DATABASE = "finejobs_demo"


@dataclass(frozen=True)
class Options:
    patients: int = 3000
    districts: int = 4
    failure_rate: float = 0.1
    workers: int = 2
    concurrency: int = 16
    late_share: float = 0.02
    database_url: str | None = None
    seed: int = 7
    console: bool = False  # keep the console open on the demo's database at the end, until Ctrl-C
    console_port: int = 8400


def resolve_database_url(explicit: str | None) -> str:
    """--database-url, else FINEJOBS_DATABASE_URL, else a demo database on the local or embedded server."""
    url = explicit or os.environ.get("FINEJOBS_DATABASE_URL")
    if url:
        return url
    from finejobs import devdb

    return devdb.create_database(devdb.discover_server_url(), name=DEMO_DATABASE, exist_ok=True)


def create_patients(engine: sa.Engine, opts: Options, now: datetime) -> None:
    rng = random.Random(opts.seed)
    rows = []
    for pid in range(1, opts.patients + 1):
        late = rng.random() < opts.late_share
        # A late dose's one-hour window closes in a few seconds: if its alert cannot go out by then, it expires.
        dose_at = now - timedelta(hours=1) + timedelta(seconds=rng.uniform(0.5, 3)) if late else \
            now + timedelta(seconds=rng.uniform(0, 3600))
        rows.append({
            "id": pid, "district": rng.randint(1, opts.districts), "phone": f"+255{rng.randint(10**8, 10**9 - 1)}",
            "channel": rng.choice(["sms", "sms", "ivr"]), "dose": rng.choice(["metformin 500mg", "ARV 1 tablet",
                                                                           "amoxicillin 250mg"]),
            "dose_at": dose_at,
        })
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS demo_patients (id integer PRIMARY KEY, district integer NOT NULL, "
            "phone text NOT NULL, channel text NOT NULL, dose text NOT NULL, dose_at timestamptz NOT NULL, "
            "alert_planned_for timestamptz)"
        )
        conn.exec_driver_sql("ALTER TABLE demo_patients ADD COLUMN IF NOT EXISTS alert_planned_for timestamptz")
        conn.exec_driver_sql("TRUNCATE demo_patients")
        conn.execute(sa.text("INSERT INTO demo_patients (id, district, phone, channel, dose, dose_at) "
                             "VALUES (:id, :district, :phone, :channel, :dose, :dose_at)"),
                     rows)


def run(opts: Options) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    url = resolve_database_url(opts.database_url)
    queue.configure(url=url, pool_size=4 * opts.workers + 2)  # each in-process worker uses up to 4
    queue.migrate()
    engine = sa.create_engine(finejobs.store.normalize_url(url))
    gateway = Gateway(failure_rate=opts.failure_rate, seed=opts.seed).start()
    os.environ["DOSAGE_GATEWAY_URL"] = gateway.url

    started = time.monotonic()
    create_patients(engine, opts, datetime.now(UTC))
    queue.schedules.sync()  # the hourly planner, declared in app.py (workers also do this when they start)

    districts = [shard_for(d) for d in range(1, opts.districts + 1)]
    queue.store.shard_add(districts)  # a partition per district: `finejobs shards add district-1 ...`
    groups = [districts[i::opts.workers] for i in range(min(opts.workers, len(districts)))]
    groups[0] = ["default", *groups[0]]  # the planner's own jobs live in the default shard
    workers = [queue.worker(shards=group, concurrency=opts.concurrency, poll_interval=0.2, maintenance_interval=0.5)
               for group in groups]
    for worker in workers:
        worker.start()

    before = _alert_ids(engine)
    _run_planner()  # what the schedule does every hour, now
    ids = _alert_ids(engine) - before
    _run_planner()  # and again: the unique keys make it harmless
    new_on_replan = len(_alert_ids(engine) - before - ids)
    print(f"planned {len(ids)} alerts for {opts.patients} patients in {opts.districts} districts "
          f"(planning again created {new_on_replan} new jobs)")
    try:
        with tqdm(total=len(ids), unit="alert", desc="alerts", file=sys.stdout) as bar:
            done = 0
            while done < len(ids):
                time.sleep(0.2)
                finished = _finished(engine, ids)
                bar.update(finished - done)
                done = finished
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()
    elapsed = time.monotonic() - started
    print_summary(engine, ids, elapsed, gateway)
    engine.dispose()
    try:
        if opts.console:
            keep_console_open(opts.console_port)
    finally:
        queue.close()
    return 0


def keep_console_open(port: int) -> None:
    """Serve the operations console on the demo's database (loopback only, no credentials) until Ctrl-C."""
    import signal
    import threading

    import finejobs.web

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with finejobs.web.serving(finejobs.web.app(queue), port=port) as url:
        print(f"\nconsole: {url}/  (the demo's jobs, schedules, shards and workers; Ctrl-C to stop)", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    print("console stopped")


def _run_planner() -> None:
    """Run the planner schedule now and wait for its job: it must succeed."""
    job_id = queue.schedules.run_now("dosage-planner", force=True)  # planning is idempotent: overlap is harmless
    deadline = time.monotonic() + 60
    while not (job := queue.get(job_id)).state.is_final:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the planner job {job_id} did not finish in 60 s")
        time.sleep(0.05)
    if job.state is not finejobs.JobState.SUCCEEDED:
        why = f"{job.errors[-1].error}: {job.errors[-1].message}" if job.errors else "no error recorded"
        raise RuntimeError(f"the planner job ended {job.state.value}: {why}")


def _alert_ids(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM finejobs_jobs WHERE kind = 'dosage.alert'")).scalars())


def _finished(engine: sa.Engine, ids: set[int]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM finejobs_jobs WHERE id = ANY(:ids) "
            "AND state IN ('succeeded', 'failed', 'expired', 'cancelled')"), {"ids": sorted(ids)}).scalar_one())


def print_summary(engine: sa.Engine, ids: set[int], elapsed: float, gateway: Gateway) -> None:
    rows = [queue.get(i) for i in sorted(ids)] if len(ids) <= 200 else \
        [j for j in queue.jobs(kind="dosage.alert", limit=len(ids) * 3) if j.id in ids]
    per_district: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: Counter[str] = Counter()
    latencies = []
    for job in rows:
        tally = per_district[job.shard]
        tally[job.state.value] += 1
        tally["retried"] += max(0, job.attempt - 1)
        if job.state is finejobs.JobState.SUCCEEDED and job.finished_at:
            latencies.append((job.finished_at - job.created_at).total_seconds())
        elif job.errors:
            last = job.errors[-1]
            reasons[f"{job.state.value}: {last.error}: {last.message}"] += 1
    print()
    header = f"{'district':<12}{'sent':>8}{'retries':>9}{'expired':>9}{'failed':>8}{'cancelled':>11}"
    print(header)
    print("-" * len(header))
    totals: Counter[str] = Counter()
    for shard in sorted(per_district, key=lambda s: int(s.rsplit("-", 1)[1])):
        t = per_district[shard]
        totals.update(t)
        print(f"{shard:<12}{t['succeeded']:>8}{t['retried']:>9}{t['expired']:>9}{t['failed']:>8}{t['cancelled']:>11}")
    print("-" * len(header))
    print(f"{'total':<12}{totals['succeeded']:>8}{totals['retried']:>9}{totals['expired']:>9}{totals['failed']:>8}"
          f"{totals['cancelled']:>11}")
    print()
    print(f"{len(rows)} alerts in {elapsed:.1f}s ({len(rows) / elapsed:.0f}/s); gateway delivered "
          f"{sum(gateway.delivered.values())} and refused {gateway.refused} requests")
    if latencies:
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
        print(f"enqueue-to-sent: p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
    if reasons:
        print("\nwhy alerts were not sent:")
        for reason, count in reasons.most_common():
            print(f"  {count:>5} x {reason}")
    unfinished = len(ids) - sum(totals[s] for s in ("succeeded", "failed", "expired", "cancelled"))
    print(f"\nunfinished: {unfinished}")
