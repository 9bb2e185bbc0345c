"""Shards: their partitions (finejobs shards add | drop), counts, and the outbox of a move between
databases (finejobs shards move).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql as psql
from sqlalchemy.engine import Connection

from finejobs.errors import (
    DatabaseUnavailable,
    FinejobsError,
    InvalidJobOptions,
)
from finejobs.sharding import validate_partition_shard, validate_shard_name
from finejobs.store import citus
from finejobs.store._base import _DATABASE_ID
from finejobs.store.citus_ops import CitusJobOps
from finejobs.store.hot import HotPathStore
from finejobs.store.operations import OperationsStore
from finejobs.store.tables import _LOCK_SHARDS, DEFAULT_PARTITION, NOTIFY_CHANNEL, jobs_table, shard_moves_table


@dataclass(frozen=True)
class ShardInfo:
    """One shard: where its rows live and how many jobs it holds in each state."""

    name: str
    partition: str  # the table holding its rows: its own partition, or the default one
    own_partition: bool
    counts: dict[str, int]

    @property
    def unfinished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("scheduled", "available", "running"))


_PARTITIONS = sa.text(
    """
    SELECT c.relname AS partition, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = CAST('finejobs_jobs' AS regclass)
    """
)


_PARTITION_BOUND = re.compile(r"^FOR VALUES IN \('([a-z0-9_.-]+)'\)$")


# The kind of a relation named :name where a new partition would go (the job table's schema, or the current
# schema, where an unqualified CREATE TABLE puts it), if there is one.
_RELATION_KIND = sa.text(
    """
    SELECT c.relkind FROM pg_class c
    WHERE c.relname = :name
      AND c.relnamespace IN (SELECT relnamespace FROM pg_class WHERE oid = CAST('finejobs_jobs' AS regclass)
                             UNION ALL SELECT oid FROM pg_namespace WHERE nspname = current_schema())
    LIMIT 1
    """
)


_RELATION_KINDS = {"r": "a table", "p": "a table", "i": "an index", "I": "an index", "S": "a sequence",
                   "v": "a view", "m": "a materialized view", "f": "a foreign table", "c": "a composite type"}


_RUNNING_SHARDS = sa.text("SELECT DISTINCT shard FROM finejobs_jobs WHERE state = 'running'")  # few rows


_UNFINISHED_IN_SHARD = sa.text(
    "SELECT count(*) FROM finejobs_jobs WHERE shard = :shard AND state IN ('available', 'running')"
)


_MOVE_STAGE = sa.text(
    # Waiting jobs of one shard leave the job table for the outbox in one statement: no worker here can
    # claim them any more, and nothing is lost if the mover dies (the outbox is durable).
    """
    WITH picked AS (
        SELECT id FROM finejobs_jobs
        WHERE shard = :shard AND state = 'available'
        ORDER BY id LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        DELETE FROM finejobs_jobs j WHERE j.shard = :shard AND j.id = ANY(ARRAY(SELECT id FROM picked))
        RETURNING j.*
    )
    INSERT INTO finejobs_shard_moves (job_id, shard, target, job, moved_at)
    SELECT m.id, m.shard, :target, to_jsonb(m), :now FROM moved m
    RETURNING job_id
    """
)


_MOVE_PENDING = sa.text(
    "SELECT job_id, target, job FROM finejobs_shard_moves WHERE shard = :shard ORDER BY job_id LIMIT :limit"
)


_MOVE_DONE = sa.text("DELETE FROM finejobs_shard_moves WHERE job_id = ANY(CAST(:ids AS bigint[]))")


_INSERT_MOVED = sa.text(
    # In the target database. moved_from ("<source>/<id>") is unique per shard, so copying the same outbox row
    # twice inserts it once; a job whose unique_key an unfinished job here already holds is not inserted
    # either (that is what unique_key means). Schedule ids belong to the source database: not copied; the
    # enqueuer's trace context is (the job's executions in the target still link to the enqueue).
    """
    WITH ins AS (
        INSERT INTO finejobs_jobs (kind, shard, payload, state, priority, run_at, expires_at, attempt, max_attempts,
                                   unique_key, errors, created_at, claims, result, trace, moved_from)
        SELECT r.kind, r.shard, r.payload, r.state, r.priority, r.run_at, r.expires_at, r.attempt, r.max_attempts,
               r.unique_key, r.errors, r.created_at, r.claims, r.result, r.trace,
               CAST(:source AS text) || '/' || r.id
        FROM jsonb_populate_recordset(NULL::finejobs_jobs, CAST(:rows AS jsonb)) AS r
        ORDER BY r.id
        ON CONFLICT DO NOTHING
        RETURNING shard, run_at
    )
    SELECT count(*) AS inserted,
           (SELECT count(pg_notify(:channel, d.shard))
            FROM (SELECT DISTINCT shard FROM ins WHERE run_at <= :now) AS d) AS notified
    FROM ins
    """
)


_MOVED_PRESENT = sa.text(
    "SELECT moved_from FROM finejobs_jobs WHERE shard = :shard AND moved_from = ANY(CAST(:keys AS text[]))"
)


def _move_refused() -> FinejobsError:
    return citus.refuse(
        "finejobs shards move", "move the Citus shard that holds it with citus_move_shard_placement, or spread them "
        "all with citus_rebalance_start(); to move a shard to another finejobs database, run it from a plain one")


def _shard_partitions(conn: Connection) -> dict[str, str]:
    found = {}
    for row in conn.execute(_PARTITIONS):
        match = _PARTITION_BOUND.match(row.bound)
        if match:
            found[match.group(1)] = str(row.partition)
    return found


_JOB_COLUMNS = psql.SQL(", ").join(psql.Identifier(c.name) for c in jobs_table.columns)


def _copy_back(cur: psycopg.Cursor[Any]) -> int:
    """Insert the rows of the temporary table finejobs_moving into the job table, ids kept."""
    cur.execute(psql.SQL("INSERT INTO finejobs_jobs ({cols}) OVERRIDING SYSTEM VALUE "
                         "SELECT {cols} FROM finejobs_moving").format(cols=_JOB_COLUMNS))
    return cur.rowcount


SHARD_COUNT_CAP = 100_000


class ShardStore(CitusJobOps, HotPathStore, OperationsStore):
    """Partitions and moves."""

    def database_id(self) -> str:
        """This database's identity: the id made at migration, and its name."""
        with self.transaction(autocommit=True) as conn:
            return str(conn.execute(_DATABASE_ID).scalar_one())

    def shard_partitions(self) -> dict[str, str]:
        """Shard -> its own partition, for the shards that have one."""
        with self.transaction(autocommit=True) as conn:
            return _shard_partitions(conn)

    def shard_list_known(self) -> list[str]:
        """The shards that have a partition, waiting jobs or running jobs, by name: what a glob is matched
        against (running ones too, so that a glob worker rescues a lost lease in a shard nothing waits in)."""
        with self.transaction(autocommit=True) as conn:
            running = set(conn.execute(_RUNNING_SHARDS).scalars())
        return sorted(set(self.shard_partitions()) | set(self.shard_list_pending()) | running)

    def shard_list(self, *, now: datetime) -> list[ShardInfo]:
        """Every shard that has a partition or jobs, with its counts by state (each finished state counted up
        to SHARD_COUNT_CAP rows: bounded on a table of millions)."""
        parts = self.shard_partitions()
        by_shard: dict[str, dict[str, int]] = {}
        rows, _ = self.job_counts(now=now, cap=SHARD_COUNT_CAP)
        for state, _kind, shard, n in rows:
            counts = by_shard.setdefault(shard, {})
            counts[state] = counts.get(state, 0) + n
        return [
            ShardInfo(name=name, partition=parts.get(name, DEFAULT_PARTITION), own_partition=name in parts,
                      counts={k: v for k, v in by_shard.get(name, {}).items() if v})
            for name in sorted(set(parts) | set(by_shard))
        ]

    def shard_add(self, names: Sequence[str], *, lock_timeout: timedelta = timedelta(seconds=10)) -> list[str]:
        """Give each shard a partition of its own (those that have one are skipped); returns the shards added.

        The shard's rows move from the default partition to the new one in the same transaction, ids and
        states unchanged. It takes the job table's exclusive lock for that long: workers wait a moment.
        Every name is checked before any DDL: a shard whose partition would take the name of finejobs' own
        relations (``other``: finejobs_jobs_other is the default partition) or of any other relation in the
        database is refused with InvalidJobOptions (its jobs stay in the default partition).
        """
        if isinstance(names, str):
            raise TypeError("names must be a sequence of shard names, not a single string")
        if self.citus:
            raise citus.refuse("a partition of a shard's own (finejobs shards add)",
                               "Citus places each shard already; to give a busy shard a Citus shard of its own, "
                               "use isolate_tenant_to_new_shard('finejobs_jobs', 'NAME', 'CASCADE')")
        partitions = {name: validate_partition_shard(name) for name in names}
        added: list[str] = []
        for name, partition in partitions.items():
            with self._shard_ddl(lock_timeout) as (conn, cur):
                if name in _shard_partitions(conn):
                    continue
                taken = conn.execute(_RELATION_KIND, {"name": partition}).scalar()
                if taken is not None:
                    raise InvalidJobOptions(
                        f"shard {name!r} cannot have a partition of its own: the name it would get, {partition}, "
                        f"is taken by {_RELATION_KINDS.get(taken, 'a relation')} of that name in this database "
                        f"(shards added before it: {added or 'none'}); its jobs stay in the default partition"
                    )
                cur.execute(psql.SQL(
                    "CREATE TEMP TABLE finejobs_moving ON COMMIT DROP AS WITH d AS ("
                    "DELETE FROM {} WHERE shard = {} RETURNING *) SELECT * FROM d"
                ).format(psql.Identifier(DEFAULT_PARTITION), psql.Literal(name)))
                cur.execute(psql.SQL("CREATE TABLE {} PARTITION OF finejobs_jobs FOR VALUES IN ({})")
                            .format(psql.Identifier(partition), psql.Literal(name)))
                _copy_back(cur)
                added.append(name)
        return added

    def shard_drop(self, name: str, *, lock_timeout: timedelta = timedelta(seconds=10)) -> int:
        """Drop a shard's partition; its finished jobs move to the default partition (returns how many).

        Refused while the shard has unfinished jobs (waiting or running), or when it has no partition.
        """
        validate_shard_name(name)
        if self.citus:
            raise citus.refuse("finejobs shards drop", "finejobs shards add is not either: no shard has a partition")
        with self._shard_ddl(lock_timeout) as (conn, cur):
            partition = _shard_partitions(conn).get(name)
            if partition is None:
                raise FinejobsError(f"shard {name!r} has no partition of its own")
            unfinished = conn.execute(_UNFINISHED_IN_SHARD, {"shard": name}).scalar_one()
            if unfinished:
                raise FinejobsError(
                    f"cannot drop shard {name!r}: {unfinished} unfinished job(s) (waiting or running) remain; "
                    "let workers finish them, cancel them, or move the shard first"
                )
            ident = psql.Identifier(partition)
            cur.execute(psql.SQL("CREATE TEMP TABLE finejobs_moving ON COMMIT DROP AS SELECT * FROM {}").format(ident))
            cur.execute(psql.SQL("ALTER TABLE finejobs_jobs DETACH PARTITION {}").format(ident))
            cur.execute(psql.SQL("DROP TABLE {}").format(ident))
            return _copy_back(cur)

    @contextmanager
    def _shard_ddl(self, lock_timeout: timedelta) -> Iterator[tuple[Connection, psycopg.Cursor[Any]]]:
        """A transaction holding the job table's exclusive lock (no statement of a worker is half done)."""
        try:
            with self.transaction() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_SHARDS})
                conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"),
                             {"t": f"{int(lock_timeout.total_seconds() * 1000)}ms"})
                conn.execute(sa.text("LOCK TABLE finejobs_jobs IN ACCESS EXCLUSIVE MODE"))
                driver = conn.connection.dbapi_connection
                assert isinstance(driver, psycopg.Connection)
                with driver.cursor() as cur:
                    yield conn, cur
        except (DatabaseUnavailable, psycopg.errors.LockNotAvailable) as exc:
            cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
            orig = cause.orig if isinstance(cause, sa.exc.DBAPIError) else cause
            if not isinstance(orig, psycopg.errors.LockNotAvailable):
                raise
            raise FinejobsError(
                f"could not lock the job table within {lock_timeout.total_seconds():g}s (a long transaction "
                "holds it); try again"
            ) from exc

    def shard_unfinished(self, *, shard: str) -> int:
        """Waiting and running jobs of ``shard`` here, plus those in this database's move outbox."""
        with self.transaction(autocommit=True) as conn:
            here = conn.execute(_UNFINISHED_IN_SHARD, {"shard": shard}).scalar_one()
            staged = conn.execute(sa.select(sa.func.count()).select_from(shard_moves_table)
                                  .where(shard_moves_table.c.shard == shard)).scalar_one()
        return int(here) + int(staged)

    def shard_move_stage(self, *, shard: str, target: str, limit: int, now: datetime) -> int:
        """Move up to ``limit`` waiting jobs of ``shard`` into the outbox, bound for ``target``."""
        if self.citus:
            raise _move_refused()
        with self.transaction(autocommit=True) as conn:
            return len(conn.execute(_MOVE_STAGE, {"shard": shard, "target": target, "limit": limit,
                                                  "now": now}).all())

    def shard_move_pending(self, *, shard: str, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        """Outbox rows of ``shard``: (job id, target database, the job row as JSON)."""
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(_MOVE_PENDING, {"shard": shard, "limit": limit}).all()
        return [(int(r.job_id), str(r.target), dict(r.job)) for r in rows]

    def shard_move_done(self, *, job_ids: Sequence[int]) -> None:
        with self.transaction(autocommit=True) as conn:
            conn.execute(_MOVE_DONE, {"ids": list(job_ids)})

    def job_insert_moved(self, *, shard: str, rows: Sequence[Mapping[str, Any]], source: str,
                         now: datetime) -> tuple[int, int]:
        """Insert jobs moved from database ``source`` (rows from its outbox), each at most once.

        Returns (inserted now, present: inserted now or by an earlier attempt). The rest were merged into
        an unfinished job here holding the same unique_key.
        """
        if self.citus:
            raise _move_refused()
        if not rows:
            return 0, 0
        keys = [f"{source}/{r['id']}" for r in rows]
        with self.transaction() as conn:
            inserted = conn.execute(_INSERT_MOVED, {"rows": json.dumps(list(rows), default=str), "source": source,
                                                    "now": now, "channel": NOTIFY_CHANNEL}).one().inserted
            present = len(conn.execute(_MOVED_PRESENT, {"shard": shard, "keys": keys}).all())
        return int(inserted), present
