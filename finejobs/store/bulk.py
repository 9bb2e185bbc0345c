"""Bulk import: COPY of many new jobs into the job table, in one transaction (see finejobs.importing).

``job_copy`` opens a transaction (its own, or a savepoint in the caller's) and a ``COPY finejobs_jobs (...)
FROM STDIN (FORMAT BINARY)`` on it, and hands out a JobCopier that writes one row per ``write(job)``: rows go
to the server as they come (psycopg sends a chunk every 32 kB), so memory stays bounded whatever the number
of jobs, and the server inserts while the caller validates the next ones. When the block ends without an
exception, the COPY is finished, the group (if any) counts its new members, one NOTIFY goes out per shard
that got due jobs, and the transaction commits (or the savepoint is released). An exception anywhere in the
block aborts the COPY and rolls the transaction (or the savepoint) back: nothing is written.

Measured on this machine, 300,000 rows into the job table (docs/performance.md): binary COPY costs about
0.5 us of client CPU a row, psycopg's text format about 3 us (it formats every timestamp in Python), so the
binary format wins; the payload goes in as the JSON text finejobs already made (a jsonb dumper of our own
prefixes the format's version byte, nothing is parsed or dumped again in Python).

COPY can neither return the new ids nor honour ``ON CONFLICT``: a job with a unique_key is refused here
(InvalidJobOptions), and callers that need ids or unique keys use ``job_insert_many``. The column list is a
fixed constant; every value is sent as data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from finejobs.errors import DatabaseUnavailable, FinejobsError, InvalidJobOptions, SchemaError
from finejobs.jobs import NewJob
from finejobs.store._base import StoreBase, UserConnection, _first_line, mask_url
from finejobs.store.groups import GroupStore

_COPY = ("COPY finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts, created_at, group_id) "
         "FROM STDIN (FORMAT BINARY)")

_TYPES = ("text", "text", "jsonb", "int2", "timestamptz", "timestamptz", "int4", "timestamptz", "int8")

_JSONB_OID = 3802

_SAVEPOINT = "finejobs_import"


class _JsonTextBinaryDumper(Dumper):
    """JSON text (a ``str`` finejobs made with json.dumps) as jsonb's binary format: version 1, then the text.
    Registered by oid only, on the COPY's cursor: nothing else is affected."""

    format = pq.Format.BINARY
    oid = _JSONB_OID

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + str(obj).encode("utf-8")


class JobCopier:
    """One open COPY into the job table (made by ``BulkStore.job_copy``): ``write`` one job at a time."""

    def __init__(self, copy: psycopg.Copy, *, now: datetime, group_id: int | None) -> None:
        self._write_row = copy.write_row
        self.now = now
        self.group_id = group_id
        self.count = 0
        self.due_shards: set[str] = set()  # shards that got a job due now: one NOTIFY each at the end

    def write(self, job: NewJob) -> None:
        if job.unique_key is not None:
            raise InvalidJobOptions(
                "a bulk import (COPY) cannot honour unique_key: COPY cannot skip a duplicate nor return the job "
                "that holds the key. Enqueue jobs with unique keys with enqueue_many")
        if job.group_id != self.group_id:
            raise InvalidJobOptions(f"this import writes members of group id {self.group_id}, not of "
                                    f"{job.group_id}: one import, one group")
        self._write_row((job.kind, job.shard, job.payload_json, job.priority, job.run_at, job.expires_at,
                         job.max_attempts, self.now, job.group_id))
        self.count += 1
        if job.run_at <= self.now:
            self.due_shards.add(job.shard)

    def write_many(self, jobs: Iterable[NewJob]) -> int:
        """Write every job of ``jobs`` (consumed as it comes); returns how many."""
        before = self.count
        for job in jobs:
            self.write(job)
        return self.count - before


def _driver(conn: UserConnection) -> psycopg.Connection[Any]:
    """The psycopg connection under a caller's SQLAlchemy Connection or Session (COPY needs the driver)."""
    driver: Any = conn
    if isinstance(driver, Session):
        driver = driver.connection()
    if isinstance(driver, Connection):
        driver = driver.connection.dbapi_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"conn must be a SQLAlchemy Connection or Session, or a psycopg Connection, not "
                        f"{type(conn).__name__} (a bulk import needs psycopg 3 for COPY)")
    return driver


class BulkStore(StoreBase):
    """COPY of many new jobs in one transaction."""

    @contextmanager
    def job_copy(self, *, now: datetime, group_id: int | None = None,
                 conn: UserConnection | None = None) -> Iterator[JobCopier]:
        """A COPY into the job table, in one transaction: this store's own (committed when the block ends),
        or, with ``conn``, a savepoint in the caller's transaction (released when the block ends: the
        caller's commit decides; an error rolls back to the savepoint, and the caller's transaction goes on
        as it was). Every job of a copier joins ``group_id`` (None: no group); the group's counter moves in
        the same transaction (a sealed or deleted group refuses the whole import)."""
        try:
            if conn is None:
                with self.engine.connect() as own:
                    driver = _driver(own)
                    try:
                        with driver.transaction():  # BEGIN ... COMMIT, or ROLLBACK on an exception
                            yield from self._copy(driver, now=now, group_id=group_id)
                    except psycopg.OperationalError:
                        own.invalidate()  # never hand a broken connection back to the pool
                        raise
            else:
                if isinstance(conn, Connection) and not conn.in_transaction():
                    conn.begin()  # as a statement run on it would (autobegin): the caller's commit() decides
                driver = _driver(conn)
                if driver.autocommit:  # no transaction of the caller's to join: the import is its own
                    with driver.transaction():
                        yield from self._copy(driver, now=now, group_id=group_id)
                else:
                    yield from self._in_savepoint(driver, now=now, group_id=group_id)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"database unavailable ({mask_url(self.url)}): {_first_line(exc)}") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise SchemaError("the finejobs schema is not migrated in this database: run `finejobs migrate`") from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SchemaError(f"permission denied: {_first_line(exc)} (a bulk import needs INSERT on "
                              "finejobs_jobs and UPDATE on finejobs_groups)") from exc
        except psycopg.Error as exc:
            raise FinejobsError(f"the database refused the import: {_first_line(exc)}") from exc

    def _in_savepoint(self, driver: psycopg.Connection[Any], *, now: datetime,
                      group_id: int | None) -> Iterator[JobCopier]:
        driver.execute(f"SAVEPOINT {_SAVEPOINT}")  # starts the caller's transaction if nothing has yet
        try:
            yield from self._copy(driver, now=now, group_id=group_id)
        except BaseException:
            if not driver.closed:
                try:
                    driver.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                    driver.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                except psycopg.OperationalError:
                    pass  # the connection is gone: the original error says more
            raise
        driver.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")

    def _copy(self, driver: psycopg.Connection[Any], *, now: datetime, group_id: int | None) -> Iterator[JobCopier]:
        with driver.cursor() as cur:
            cur.adapters.register_dumper(None, _JsonTextBinaryDumper)  # this cursor's own copy of the adapters
            with cur.copy(_COPY) as copy:
                copy.set_types(list(_TYPES))
                copier = JobCopier(copy, now=now, group_id=group_id)
                yield copier
        if group_id is not None:
            # On a JobStore (which is a GroupStore too), in this transaction; raises if the group is sealed.
            GroupStore.group_join(cast(GroupStore, self), driver, group_id=group_id, count=copier.count)
        GroupStore.notify_shards(driver, sorted(copier.due_shards))

    def job_copy_many(self, jobs: Iterable[NewJob], *, now: datetime, group_id: int | None = None,
                      conn: UserConnection | None = None) -> int:
        """COPY every job of ``jobs`` (consumed as it comes) in one transaction; returns how many."""
        with self.job_copy(now=now, group_id=group_id, conn=conn) as copier:
            return copier.write_many(jobs)
