"""The app the crash suite's workers run (``bench.crash``): one job kind that records every run.

The handler writes a ``start`` row, sleeps the payload's few milliseconds, then writes a ``finish``
row into ``crash_events``, a table of the suite's own. Each row is its own short autocommit
transaction on a connection of the handler thread's own: never inside finejobs' claim or completion.
Timestamps come from the database's ``clock_timestamp()``, so the driver compares them with kill
times read from the same clock.

The database comes from FINEJOBS_DATABASE_URL, as for any finejobs app.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
from pydantic import BaseModel

from finejobs import JobContext, Queue, Retry
from finejobs.store import libpq_url

KIND = "crash.work"
MEMBER_KIND = "crash.member"  # a group member (bench.group_crash): sleeps, records nothing
CALLBACK_KIND = "crash.callback"  # a group's callback: records each run in crash_callbacks
# A job killed mid-run comes back with its attempt counted; a handful of kills of the same job must not
# fail it, so the suite can demand that every job succeeds.
MAX_ATTEMPTS = 25

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS crash_events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  bigint      NOT NULL,
    attempt integer     NOT NULL,
    pid     integer     NOT NULL,
    event   text        NOT NULL CHECK (event IN ('start', 'finish')),
    at      timestamptz NOT NULL,
    lease_lost boolean  NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS crash_events_job_idx ON crash_events (job_id, attempt);
CREATE TABLE IF NOT EXISTS crash_callbacks (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  bigint      NOT NULL,
    "group" text        NOT NULL,
    event   text        NOT NULL,
    pid     integer     NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

_RECORD = (
    "INSERT INTO crash_events (job_id, attempt, pid, event, at, lease_lost) "
    "VALUES (%s, %s, %s, %s, clock_timestamp(), %s)"
)


class Work(BaseModel):
    n: int
    sleep_ms: int = 10


_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(libpq_url(os.environ["FINEJOBS_DATABASE_URL"]), autocommit=True,
                               application_name="finejobs-crash-handler")
        _local.conn = conn
    return conn


def record(job_id: int, attempt: int, event: str, *, lease_lost: bool = False) -> None:
    _connection().execute(_RECORD, (job_id, attempt, os.getpid(), event, lease_lost))


def make_queue(url: str | None = None) -> Queue:
    """A Queue with the crash suite's one job kind (``url`` defaults to FINEJOBS_DATABASE_URL)."""
    q = Queue(url)

    @q.job(KIND, retry=Retry(max_attempts=MAX_ATTEMPTS, backoff=timedelta(milliseconds=10),
                             max_backoff=timedelta(milliseconds=100)))
    def work(payload: Work, ctx: JobContext) -> None:
        record(ctx.job.id, ctx.attempt, "start")
        time.sleep(payload.sleep_ms / 1000)
        record(ctx.job.id, ctx.attempt, "finish", lease_lost=ctx.cancelled.is_set())

    @q.job(MEMBER_KIND, retry=Retry(max_attempts=MAX_ATTEMPTS, backoff=timedelta(milliseconds=10),
                                    max_backoff=timedelta(milliseconds=100)))
    def member(payload: Work) -> None:
        time.sleep(payload.sleep_ms / 1000)

    @q.job(CALLBACK_KIND, retry=Retry(max_attempts=MAX_ATTEMPTS, backoff=timedelta(milliseconds=10)))
    def callback(payload: dict[str, Any], ctx: JobContext) -> None:
        _connection().execute('INSERT INTO crash_callbacks (job_id, "group", event, pid) VALUES (%s, %s, %s, %s)',
                              (ctx.job.id, payload["group"], payload["event"], os.getpid()))

    return q


queue = make_queue()
