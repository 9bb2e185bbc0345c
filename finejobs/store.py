"""JobStore: the only module that runs SQL.

Tables are declared with SQLAlchemy Core (a test compares them with the migrated schema). The hot
statements (bulk insert, claim, batched completion, heartbeat, rescue) are written as SQL text with
bound parameters only: no SQL is ever built from user strings. Methods are noun-first, take keyword
arguments and return frozen dataclasses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql as psql
from psycopg.rows import dict_row
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from finejobs.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    FinejobsError,
    InvalidJobOptions,
    JobNotFound,
    SchemaError,
)
from finejobs.jobs import FINAL_STATES, AttemptError, Job, JobState, Undecodable
from finejobs.masking import mask_passwords, password_forms
from finejobs.sharding import validate_partition_shard, validate_shard_name

NOTIFY_CHANNEL = "finejobs"
UNFINISHED_STORED = ("available", "running")

metadata = sa.MetaData()

jobs_table = sa.Table(
    "finejobs_jobs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    # 0004: the table is LIST-partitioned by shard, and the primary key is (id, shard).
    sa.Column("shard", sa.Text, nullable=False, server_default="default", primary_key=True),
    sa.Column("payload", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("state", sa.Text, nullable=False, server_default="available"),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("run_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("unique_key", sa.Text),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("errors", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    # 0002 (schedules): the tick a job was made for, and what its handler said ('idle', 'timeout').
    sa.Column("schedule_id", sa.BigInteger),
    sa.Column("fire_at", sa.DateTime(timezone=True)),
    sa.Column("result", sa.Text),
    # 0003: claims so far, never given back (the fencing token of completions).
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    # 0004: "<database>/<id>" of the job this one was moved from (finejobs shards move).
    sa.Column("moved_from", sa.Text),
)

shard_moves_table = sa.Table(
    # 0004: the outbox of `finejobs shards move` in the source database (see the migration).
    "finejobs_shard_moves",
    metadata,
    sa.Column("job_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("shard", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("job", pg.JSONB, nullable=False),
    sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

migrations_table = sa.Table(
    "finejobs_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Advisory-lock keys (arbitrary constants, one per exclusive activity).
_LOCK_MIGRATE = 0x66696E656A6F6201
_LOCK_RESCUE = 0x66696E656A6F6202
_LOCK_EXPIRE = 0x66696E656A6F6203
_LOCK_PRUNE = 0x66696E656A6F6204
_LOCK_SHARDS = 0x66696E656A6F6205
# Per-shard maintenance takes the two-key form pg_try_advisory_xact_lock(activity, shard_lock_key(shard)).
_SHARD_LOCK_RESCUE, _SHARD_LOCK_EXPIRE, _SHARD_LOCK_PRUNE = 0x666A0001, 0x666A0002, 0x666A0003
DEFAULT_PARTITION = "finejobs_jobs_other"

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class NewJob:
    """A validated job, ready to insert."""

    kind: str
    payload: dict[str, Any]
    payload_json: str
    shard: str
    priority: int
    run_at: datetime
    expires_at: datetime | None
    max_attempts: int
    unique_key: str | None


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, to be written by ``job_complete_many``.

    ``state`` is the stored state to move to ("available" for a retry, a snooze or a release).
    ``uncount`` is 1 when the attempt must not count (snooze, release of an unstarted job).
    """

    job_id: int
    attempt: int
    state: str
    finished_at: datetime | None = None
    run_at: datetime | None = None
    error: AttemptError | None = None
    uncount: int = 0
    result: str | None = None  # 'idle' (the handler returned finejobs.Idle) or 'timeout'
    # The job's claim count when this worker claimed it: a fencing token that, unlike the attempt, is never
    # given back (a Snooze or a release returns the attempt, so attempt + owner alone could match a later
    # claim of the same job by the same worker). None: guard by attempt and owner only.
    claims: int | None = None
    # The job's shard: the write then touches that shard's partition only. None: look in every partition.
    shard: str | None = None


@dataclass(frozen=True)
class Stats:
    """Job counts by state, kind and shard (``scheduled`` told apart from ``available``)."""

    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    by_shard: dict[str, dict[str, int]]
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "by_state": self.by_state, "by_kind": self.by_kind,
                "by_shard": self.by_shard}

    @classmethod
    def combine(cls, parts: Sequence[Stats]) -> Stats:
        """The sum of several databases' counts."""
        if len(parts) == 1:
            return parts[0]
        by_state: dict[str, int] = {s.value: 0 for s in JobState}
        by_kind: dict[str, dict[str, int]] = {}
        by_shard: dict[str, dict[str, int]] = {}
        for part in parts:
            for state, n in part.by_state.items():
                by_state[state] = by_state.get(state, 0) + n
            for mine, theirs in ((by_kind, part.by_kind), (by_shard, part.by_shard)):
                for name, counts in theirs.items():
                    group = mine.setdefault(name, {})
                    for state, n in counts.items():
                        group[state] = group.get(state, 0) + n
        return cls(by_state=by_state, by_kind=by_kind, by_shard=by_shard, total=sum(p.total for p in parts))


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


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MaintenanceResult:
    rescued: int = 0
    expired: int = 0
    pruned: dict[str, int] = field(default_factory=dict)


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` URLs and select the psycopg 3 driver.

    A user-info part with an unencoded ``@`` (``u:p@ss@host``) is refused: libpq and SQLAlchemy would take
    ``ss@host`` for the host and print that part of the password in their connection errors."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            if rest.partition("?")[0].rpartition("/")[0].count("@") > 1 or (
                    "/" not in rest.partition("?")[0] and rest.partition("?")[0].count("@") > 1):
                raise ConfigurationError(f"invalid database URL {mask_url(url)!r}: the user name or password holds "
                                         "an unencoded '@': write it as %40")
            return "postgresql+psycopg://" + rest
    raise ConfigurationError(f"not a PostgreSQL URL: {mask_url(url)!r} (expected postgresql://...)")


def libpq_url(url: str) -> str:
    """The same URL in the form psycopg (libpq) takes."""
    return normalize_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def mask_url(url: str) -> str:
    """Hide the passwords in a database URL, a libpq conninfo string or a message holding either: for logs and
    error messages (see finejobs.masking.mask_passwords: user-info, query string, conninfo)."""
    return mask_passwords(url)


def url_secrets(url: str) -> set[str]:
    """Every form of every password in ``url``, as :func:`mask_url` finds them (finejobs.masking.password_forms),
    also as SQLAlchemy renders the URL again (JobStore.url: its own percent-encoding, which libpq errors may
    quote): for scrubbing them from text that does not show the URL itself."""
    found = password_forms(url)
    try:
        rendered = sa.engine.make_url(normalize_url(url)).render_as_string(hide_password=False)
    except (ConfigurationError, ValueError, sa.exc.ArgumentError):  # not a URL SQLAlchemy reads
        return found
    return found | password_forms(rendered)


def available_migrations() -> list[Migration]:
    """The migrations shipped with this finejobs, in order."""
    found = []
    for entry in resources.files("finejobs.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


_INSERT = sa.text(
    # One JSON array in, one row per element: much cheaper to bind than eight typed arrays. The same
    # statement sends one NOTIFY per shard that got a due job (an uncorrelated subquery runs once).
    """
    WITH ins AS (
        INSERT INTO finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts,
                                   unique_key, created_at)
        SELECT u.kind, u.shard, u.payload, u.priority, u.run_at, u.expires_at, u.max_attempts,
               u.unique_key, :now
        FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb))
                        AS (kind text, shard text, payload jsonb, priority smallint, run_at timestamptz,
                            expires_at timestamptz, max_attempts integer, unique_key text))
             WITH ORDINALITY AS u(kind, shard, payload, priority, run_at, expires_at, max_attempts, unique_key,
                                  ord)
        ORDER BY u.ord
        ON CONFLICT (shard, unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'running')
        DO NOTHING
        RETURNING id, unique_key, shard, run_at
    )
    SELECT id, unique_key, shard,
           (SELECT count(pg_notify(:channel, d.shard))
            FROM (SELECT DISTINCT shard FROM ins WHERE run_at <= :now) AS d) AS notified
    FROM ins
    """
)

_SELECT_UNFINISHED_BY_KEYS = sa.text(
    """
    SELECT j.* FROM finejobs_jobs j
    JOIN unnest(CAST(:shards AS text[]), CAST(:keys AS text[])) AS k(shard, unique_key)
      ON j.shard = k.shard AND j.unique_key = k.unique_key
    WHERE j.state IN ('available', 'running')
    """
)


# Every "pick ids, then update them" statement joins with `id = ANY(ARRAY(SELECT ...))`: psycopg prepares
# statements after a few runs, and a generic plan (LIMIT $n unknown) would otherwise hash-join the whole
# table. With ANY(ARRAY(...)) the update is an index scan on the primary key whatever the estimate.


_CLAIM = sa.text(
    # One shard per statement: with `shard = :shard` leading the claim index, the ordered index scan is the
    # plan even from stale statistics (without it, a planner may bitmap-scan and sort the whole backlog).
    """
    WITH picked AS (
        SELECT id FROM finejobs_jobs
        WHERE state = 'available' AND shard = :shard AND run_at <= :now
          AND kind = ANY(CAST(:kinds AS text[]))
          AND (expires_at IS NULL OR expires_at > :now)
        ORDER BY priority DESC, run_at, id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE finejobs_jobs j
    SET state = 'running', attempt = j.attempt + 1, claims = j.claims + 1, lease_owner = :owner,
        lease_expires_at = :lease_deadline, started_at = :now
    WHERE j.shard = :shard AND j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.*
    """
)

_CLAIM_SHARDS = sa.text(
    # Several shards in one statement, at most :share jobs from each: the same ordered scan per shard as
    # _CLAIM (a lateral subquery; each shard's partition is pruned at run time), in one round trip.
    """
    WITH picked AS MATERIALIZED (
        SELECT p.id
        FROM unnest(CAST(:shards AS text[])) AS s(shard)
        CROSS JOIN LATERAL (
            SELECT c.id FROM finejobs_jobs c
            WHERE c.state = 'available' AND c.shard = s.shard AND c.run_at <= :now
              AND c.kind = ANY(CAST(:kinds AS text[]))
              AND (c.expires_at IS NULL OR c.expires_at > :now)
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT :share
            FOR UPDATE SKIP LOCKED
        ) AS p
    )
    UPDATE finejobs_jobs j
    SET state = 'running', attempt = j.attempt + 1, claims = j.claims + 1, lease_owner = :owner,
        lease_expires_at = :lease_deadline, started_at = :now
    WHERE j.shard = ANY(CAST(:shards AS text[])) AND j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.*
    """
)

_PENDING_SHARDS = sa.text(
    # A skip scan over the claim index: one index probe per shard that has waiting jobs.
    """
    WITH RECURSIVE s AS (
        (SELECT shard FROM finejobs_jobs WHERE state = 'available' ORDER BY shard LIMIT 1)
        UNION ALL
        SELECT (SELECT shard FROM finejobs_jobs WHERE state = 'available' AND shard > s.shard
                ORDER BY shard LIMIT 1)
        FROM s WHERE s.shard IS NOT NULL
    )
    SELECT shard FROM s WHERE shard IS NOT NULL
    """
)

def _complete_sql(*, in_shard: bool) -> sa.TextClause:
    # The outcomes are materialized once and the rows found by primary key: a nested loop over the
    # function scan would parse the JSON once per candidate row. With in_shard, the statement names the
    # shard, so it touches that shard's partition only (pruned at executor start, generic plans too).
    shard = "j.shard = :shard AND " if in_shard else ""
    return sa.text(f"""
    WITH u AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS x(id bigint, attempt integer, claims integer, state text, run_at timestamptz,
                 finished_at timestamptz, error jsonb, uncount integer, result text)
    )
    UPDATE finejobs_jobs j
    SET state = u.state,
        run_at = COALESCE(u.run_at, j.run_at),
        attempt = j.attempt - u.uncount,
        result = u.result,
        finished_at = u.finished_at,
        errors = CASE WHEN u.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(u.error) END,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM u
    WHERE {shard}j.id = ANY(ARRAY(SELECT id FROM u)) AND j.id = u.id
      AND j.state = 'running' AND j.attempt = u.attempt AND j.lease_owner = :owner
      AND (u.claims IS NULL OR j.claims = u.claims)
    RETURNING j.id
    """)


_COMPLETE_IN_SHARD = _complete_sql(in_shard=True)
_COMPLETE_SHARDS_APART = 2  # a batch with outcomes of more shards than this is written in one statement
_COMPLETE_ANY_SHARD = _complete_sql(in_shard=False)

_HEARTBEAT = sa.text(
    """
    WITH u AS MATERIALIZED (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[])) AS x(id, attempt)
    )
    UPDATE finejobs_jobs j SET lease_expires_at = :deadline
    FROM u
    WHERE j.id = ANY(CAST(:ids AS bigint[])) AND j.id = u.id
      AND j.attempt = u.attempt AND j.state = 'running' AND j.lease_owner = :owner
    RETURNING j.id
    """
)


# Maintenance statements come in two forms: over every shard, or over one (`in_shard`: the statement names
# the shard, so it reads and writes that shard's partition only).
def _in(in_shard: bool, alias: str = "") -> str:
    return f"{alias}shard = :shard AND " if in_shard else ""


def _rescue_sql(*, mine: bool, in_shard: bool = False) -> sa.TextClause:
    # A lease that ran out (its worker died), or, with mine=True, jobs this worker gives up at shutdown.
    which = (
        "lease_owner = :owner AND id = ANY(CAST(:ids AS bigint[]))" if mine else "lease_expires_at < :now"
    )
    return sa.text(
        f"""
        WITH stale AS (
            SELECT id FROM finejobs_jobs
            WHERE {_in(in_shard)}state = 'running' AND {which}
            ORDER BY lease_expires_at LIMIT :limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE finejobs_jobs j
        SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed'
                         WHEN j.expires_at IS NOT NULL AND j.expires_at <= :now THEN 'expired'
                         ELSE 'available' END,
            run_at = :now,
            finished_at = CASE WHEN j.attempt >= j.max_attempts
                                 OR (j.expires_at IS NOT NULL AND j.expires_at <= :now)
                               THEN CAST(:now AS timestamptz) END,
            errors = j.errors || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempt, 'at', CAST(:now_iso AS text), 'error', CAST(:error AS text),
                'message', CAST(:message AS text), 'traceback', NULL, 'worker', j.lease_owner)),
            lease_owner = NULL,
            lease_expires_at = NULL
        WHERE {_in(in_shard, "j.")}j.id = ANY(ARRAY(SELECT id FROM stale))
        RETURNING j.id, j.state
        """
    )


_RESCUE_EXPIRED_LEASES = {False: _rescue_sql(mine=False), True: _rescue_sql(mine=False, in_shard=True)}
_RESCUE_MINE = _rescue_sql(mine=True)


def _expire_sql(*, in_shard: bool) -> sa.TextClause:
    return sa.text(f"""
    WITH overdue AS (
        SELECT id FROM finejobs_jobs
        WHERE {_in(in_shard)}state = 'available' AND expires_at IS NOT NULL AND expires_at <= :now
        ORDER BY expires_at LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE finejobs_jobs j
    SET state = 'expired', finished_at = :now,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', CAST(:now_iso AS text), 'error', 'Expired',
            'message', 'not started before expires_at', 'traceback', NULL, 'worker', NULL))
    WHERE {_in(in_shard, "j.")}j.id = ANY(ARRAY(SELECT id FROM overdue))
    RETURNING j.id
    """)


def _prune_sql(*, in_shard: bool) -> sa.TextClause:
    return sa.text(f"""
    DELETE FROM finejobs_jobs WHERE {_in(in_shard)}id = ANY(ARRAY(
        SELECT id FROM finejobs_jobs
        WHERE {_in(in_shard)}state = :state AND finished_at < :cutoff
        ORDER BY finished_at LIMIT :limit
    ))
    """)


_EXPIRE_OVERDUE = {False: _expire_sql(in_shard=False), True: _expire_sql(in_shard=True)}
_PRUNE = {False: _prune_sql(in_shard=False), True: _prune_sql(in_shard=True)}

_TRY_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key)")
_TRY_SHARD_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key, :shard_key)")

_STATS = sa.text(
    """
    SELECT CASE WHEN state = 'available' AND run_at > :now THEN 'scheduled' ELSE state END AS state,
           kind, shard, count(*) AS n
    FROM finejobs_jobs GROUP BY 1, 2, 3
    """
)

_CANCEL = sa.text(
    """
    UPDATE finejobs_jobs
    SET state = 'cancelled', finished_at = :now, lease_owner = NULL, lease_expires_at = NULL,
        errors = errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempt, 'at', CAST(:now_iso AS text), 'error', 'Cancelled',
            'message', CAST(:reason AS text), 'traceback', NULL, 'worker', NULL))
    WHERE id = :id AND state IN ('available', 'running')
    RETURNING *
    """
)

_RETRY = sa.text(
    """
    UPDATE finejobs_jobs
    SET state = 'available', run_at = :now, finished_at = NULL,
        max_attempts = GREATEST(max_attempts, attempt + 1),
        expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= :now THEN NULL ELSE expires_at END
    WHERE id = :id AND state IN ('failed', 'expired', 'cancelled')
    RETURNING *
    """
)

_RUN_NOW = sa.text(
    "UPDATE finejobs_jobs SET run_at = :now WHERE id = :id AND state = 'available' RETURNING *"
)


# ==================================================================== shards (finejobs shards ...)
# Partition DDL cannot take bound parameters: partition names come from sharding.partition_name() and shard
# names pass validate_shard_name(); both are still quoted with psycopg.sql.Identifier / Literal.

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
    # either (that is what unique_key means). Schedule ids belong to the source database: not copied.
    """
    WITH ins AS (
        INSERT INTO finejobs_jobs (kind, shard, payload, state, priority, run_at, expires_at, attempt, max_attempts,
                                   unique_key, errors, created_at, claims, result, moved_from)
        SELECT r.kind, r.shard, r.payload, r.state, r.priority, r.run_at, r.expires_at, r.attempt, r.max_attempts,
               r.unique_key, r.errors, r.created_at, r.claims, r.result, CAST(:source AS text) || '/' || r.id
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

_DATABASE_ID = sa.text("SELECT id::text || '/' || current_database() AS id FROM finejobs_database")


# ==================================================================== schedules (finejobs.scheduler)
# Everything below up to the end of this section, and the JobStore methods named schedule_*, belong to
# recurring schedules (migration 0002). A tick becomes a job in one transaction: a compare-and-set UPDATE
# moves next_fire_at (WHERE version = :version AND next_fire_at = :expected), then the job is inserted;
# the unique (schedule_id, fire_at) index on the job rows backs it up.

schedules_table = sa.Table(
    "finejobs_schedules",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("shard", sa.Text, nullable=False, server_default="default"),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("rule", pg.JSONB, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("start_at", sa.DateTime(timezone=True)),
    sa.Column("end_at", sa.DateTime(timezone=True)),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("misfire", sa.Text, nullable=False, server_default="coalesce"),
    sa.Column("misfire_limit", sa.Integer, nullable=False, server_default="100"),
    sa.Column("misfire_grace", sa.Interval, nullable=False, server_default=sa.text("'60 seconds'")),
    sa.Column("overlap", sa.Text, nullable=False, server_default="skip"),
    sa.Column("expires_in", sa.Interval),
    sa.Column("next_fire_at", sa.DateTime(timezone=True)),
    sa.Column("last_fire_at", sa.DateTime(timezone=True)),
    sa.Column("last_job_id", sa.BigInteger),
    sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("skipped", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("source", sa.Text, nullable=False, server_default="runtime"),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # 0005: the ticks that made a run (run-now runs aside): what a rule's COUNT counts.
    sa.Column("fired", sa.BigInteger, nullable=False, server_default="0"),
)

# The columns a schedule operation may set (update() takes names from this list only, never from users).
SCHEDULE_SETTABLE = (
    "description", "kind", "payload", "shard", "priority", "max_attempts", "rule", "timezone", "start_at",
    "end_at", "paused", "misfire", "misfire_limit", "misfire_grace", "overlap", "expires_in", "next_fire_at",
    "last_error", "source", "fired",
)


@dataclass(frozen=True)
class ScheduleRow:
    """A schedule row, with what its last run did (from the job it made, while that job is kept)."""

    id: int
    name: str
    description: str
    kind: str
    payload: dict[str, Any]
    shard: str
    priority: int
    max_attempts: int
    rule: dict[str, Any]
    timezone: str
    start_at: datetime | None
    end_at: datetime | None
    paused: bool
    misfire: str
    misfire_limit: int
    misfire_grace: timedelta
    overlap: str
    expires_in: timedelta | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_job_id: int | None
    runs: int
    skipped: int
    last_error: str | None
    source: str
    version: int
    created_at: datetime
    updated_at: datetime
    fired: int = 0  # ticks that made a run (what a rule's COUNT counts; run-now runs are not ticks)
    last_state: str | None = None
    last_result: str | None = None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    unfinished: bool = False

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ScheduleRow:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class ScheduleRunRow:
    """One job a schedule made."""

    job_id: int
    fire_at: datetime | None
    state: str
    result: str | None
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_attempts: int
    error: str | None


_SCHEDULE_SELECT = """
    SELECT s.*, j.state AS last_state, j.result AS last_result, j.started_at AS last_started_at,
           j.finished_at AS last_finished_at,
           EXISTS (SELECT 1 FROM finejobs_jobs u
                   WHERE u.schedule_id = s.id AND u.state IN ('available', 'running')
                     AND (u.state = 'running' OR u.expires_at IS NULL OR u.expires_at > :now)) AS unfinished
    FROM finejobs_schedules s LEFT JOIN finejobs_jobs j ON j.id = s.last_job_id
"""

_SCHEDULE_GET = sa.text(_SCHEDULE_SELECT + " WHERE s.name = :name")

_SCHEDULE_LIST = sa.text(
    _SCHEDULE_SELECT
    + """ WHERE CAST(:pattern AS text) IS NULL OR s.name ILIKE :pattern OR s.description ILIKE :pattern
              OR s.kind ILIKE :pattern
          ORDER BY s.name"""
)

_SCHEDULE_DUE = sa.text(
    _SCHEDULE_SELECT
    + """ WHERE s.id = ANY(ARRAY(SELECT id FROM finejobs_schedules
                                 WHERE NOT paused AND next_fire_at <= :now
                                 ORDER BY next_fire_at LIMIT :limit))
          ORDER BY s.next_fire_at"""
)

_SCHEDULE_WAITING = sa.text(
    # Adaptive schedules wait with next_fire_at NULL until their last run finished.
    _SCHEDULE_SELECT
    + """ WHERE NOT s.paused AND s.next_fire_at IS NULL AND s.rule->>'type' = 'adaptive'
            AND (j.id IS NULL OR j.state NOT IN ('available', 'running'))
          ORDER BY s.id"""
)

_SCHEDULE_UPSERT_DECLARED = sa.text(
    # A schedule declared in code: its definition follows the code; paused and the counters stay as the
    # operators left them; next_fire_at is recomputed only when the rule or its bounds changed.
    """
    INSERT INTO finejobs_schedules AS s (name, description, kind, payload, shard, priority, max_attempts, rule,
        timezone, start_at, end_at, misfire, misfire_limit, misfire_grace, overlap, expires_in, next_fire_at,
        source, created_at, updated_at)
    VALUES (:name, :description, :kind, CAST(:payload AS jsonb), :shard, :priority, :max_attempts,
        CAST(:rule AS jsonb), :timezone, :start_at, :end_at, :misfire, :misfire_limit, :misfire_grace, :overlap,
        :expires_in, :next_fire_at, 'code', :now, :now)
    ON CONFLICT (name) DO UPDATE SET
        description = EXCLUDED.description, kind = EXCLUDED.kind, payload = EXCLUDED.payload,
        shard = EXCLUDED.shard, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
        misfire = EXCLUDED.misfire, misfire_limit = EXCLUDED.misfire_limit,
        misfire_grace = EXCLUDED.misfire_grace, overlap = EXCLUDED.overlap, expires_in = EXCLUDED.expires_in,
        rule = EXCLUDED.rule, timezone = EXCLUDED.timezone, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,
        next_fire_at = CASE WHEN s.rule = EXCLUDED.rule AND s.start_at IS NOT DISTINCT FROM EXCLUDED.start_at
                                 AND s.end_at IS NOT DISTINCT FROM EXCLUDED.end_at
                            THEN s.next_fire_at ELSE EXCLUDED.next_fire_at END,
        -- a new start (the rule's or the schedule's) begins a new series: its COUNT counts from zero again
        fired = CASE WHEN s.rule->>'start' IS NOT DISTINCT FROM EXCLUDED.rule->>'start'
                          AND s.start_at IS NOT DISTINCT FROM EXCLUDED.start_at
                     THEN s.fired ELSE 0 END,
        source = 'code', version = s.version + 1, updated_at = EXCLUDED.updated_at
    WHERE (s.description, s.kind, s.payload, s.shard, s.priority, s.max_attempts, s.rule, s.timezone,
           s.misfire, s.misfire_limit, s.misfire_grace, s.overlap, s.source)
          IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.kind, EXCLUDED.payload, EXCLUDED.shard,
           EXCLUDED.priority, EXCLUDED.max_attempts, EXCLUDED.rule, EXCLUDED.timezone, EXCLUDED.misfire,
           EXCLUDED.misfire_limit, EXCLUDED.misfire_grace, EXCLUDED.overlap, EXCLUDED.source)
       OR s.start_at IS DISTINCT FROM EXCLUDED.start_at OR s.end_at IS DISTINCT FROM EXCLUDED.end_at
       OR s.expires_in IS DISTINCT FROM EXCLUDED.expires_in
    RETURNING id
    """
)

_SCHEDULE_ADVANCE = sa.text(
    # The compare-and-set: only the scheduler that read this version and this next_fire_at moves it on.
    """
    UPDATE finejobs_schedules
    SET next_fire_at = :next_fire_at, skipped = skipped + :skipped, fired = fired + :fired,
        last_fire_at = COALESCE(CAST(:last_fire_at AS timestamptz), last_fire_at),
        last_error = NULL, version = version + 1, updated_at = :now
    WHERE id = :id AND version = :version AND next_fire_at IS NOT DISTINCT FROM CAST(:expected AS timestamptz)
    RETURNING id
    """
)

_SCHEDULE_INSERT_JOBS = sa.text(
    # The payload is the schedule's own jsonb, copied as it is (a round trip through Python could change
    # a number such as 1e20 into an integer); the compare-and-set just checked the row is the one planned.
    """
    WITH ins AS (
        INSERT INTO finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts, schedule_id,
                                   fire_at, created_at)
        SELECT u.kind, u.shard, s.payload, u.priority, u.run_at, u.expires_at, u.max_attempts, :schedule_id,
               u.fire_at, :now
        FROM jsonb_to_recordset(CAST(:rows AS jsonb))
             AS u(kind text, shard text, priority smallint, run_at timestamptz,
                  expires_at timestamptz, max_attempts integer, fire_at timestamptz)
        JOIN finejobs_schedules s ON s.id = :schedule_id
        ON CONFLICT (shard, schedule_id, fire_at) WHERE schedule_id IS NOT NULL DO NOTHING
        RETURNING id, shard, run_at, fire_at
    ), counted AS (
        UPDATE finejobs_schedules
        SET runs = runs + (SELECT count(*) FROM ins),
            last_job_id = COALESCE((SELECT id FROM ins ORDER BY fire_at DESC, id DESC LIMIT 1), last_job_id)
        WHERE id = :schedule_id
    )
    SELECT id, (SELECT count(pg_notify(:channel, d.shard))
                FROM (SELECT DISTINCT shard FROM ins WHERE run_at <= :now) AS d) AS notified
    FROM ins ORDER BY fire_at
    """
)

_SCHEDULE_RUNS = sa.text(
    """
    SELECT id AS job_id, fire_at, state, result, run_at, started_at, finished_at, attempt, max_attempts,
           errors -> -1 ->> 'error' AS error_type, errors -> -1 ->> 'message' AS error_message
    FROM finejobs_jobs WHERE schedule_id = :schedule_id
    ORDER BY fire_at DESC, id DESC LIMIT :limit
    """
)

_SCHEDULE_PAUSE_ALL = sa.text(
    """
    UPDATE finejobs_schedules SET paused = :paused, version = version + 1, updated_at = :now
    WHERE paused <> :paused AND (CAST(:kind AS text) IS NULL OR kind = :kind)
    RETURNING name
    """
)



def _schedule_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for a schedule statement; a payload given as JSON text is stored as that text."""
    columns = dict(values)
    if isinstance(columns.get("payload"), str):
        columns["payload"] = sa.cast(sa.literal(columns["payload"], sa.Text), pg.JSONB)
    return columns

# ==================================================================== end of schedules section


_PSYCOPG_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=64)
def _compiled_for_psycopg(stmt: sa.TextClause) -> str:
    return str(stmt.compile(dialect=_PSYCOPG_DIALECT))


UserConnection = Connection | Session | psycopg.Connection[Any]


class JobStore:
    """All database access of finejobs. Thread-safe: each call takes a pooled connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Single statements on the hot path run in autocommit: one round trip instead of BEGIN/stmt/COMMIT.
        self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    # ---------------------------------------------------------------- connections and schema

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 5) -> JobStore:
        try:
            port = sa.engine.make_url(normalize_url(url)).port
        except (ValueError, sa.exc.ArgumentError) as exc:
            raise ConfigurationError(f"invalid database URL {mask_url(url)!r}: {exc}") from None
        if port is not None and not 1 <= port <= 65535:
            raise ConfigurationError(f"invalid database URL {mask_url(url)!r}: port {port} is not within 1..65535")
        engine = sa.create_engine(
            normalize_url(url),
            pool_size=pool_size,
            max_overflow=0,  # pool_size is a hard bound on what this process takes from the database
            # No pre-ping (a round trip per checkout): a connection lost in a database restart raises once,
            # SQLAlchemy then invalidates the whole pool, and callers (worker services) retry with backoff.
            pool_pre_ping=False,
            pool_recycle=1800,
            # Generic plans for the statements psycopg prepares: every hot statement names its shard, so a
            # generic plan prunes partitions at executor start. Left to choose ("auto"), PostgreSQL 15 re-plans
            # every execution once the table has a dozen partitions, about twice the cost per statement
            # (measured: an empty claim 180-270 us generic, 470-500 us custom, with 17 partitions).
            connect_args={"connect_timeout": 10, "options": "-c plan_cache_mode=force_generic_plan"},
        )
        return cls(engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False).replace("+psycopg", "", 1)

    def listen(self) -> Notifications:
        """A LISTEN connection to this database (see Notifications)."""
        u = self.engine.url
        parts: dict[str, Any] = {key: str(value) for key, value in u.query.items()}  # sslmode, password, ...
        given = {"host": u.host, "port": u.port, "dbname": u.database, "user": u.username, "password": u.password}
        parts.update({key: value for key, value in given.items() if value is not None})
        conninfo = psycopg.conninfo.make_conninfo("", **parts)
        return Notifications(conninfo, self.url)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self, *, autocommit: bool = False) -> Iterator[Connection]:
        """A short transaction on a pooled connection; connection failures become DatabaseUnavailable.

        ``autocommit=True`` is for a single statement (atomic by itself): it saves BEGIN and COMMIT.
        """
        try:
            if autocommit:
                with self._autocommit_engine.connect() as conn:
                    yield conn
            else:
                with self.engine.begin() as conn:
                    yield conn
        except sa.exc.OperationalError as exc:
            raise DatabaseUnavailable(
                f"database unavailable ({mask_url(self.url)}): {_first_line(exc.orig)}"
            ) from exc
        except sa.exc.DataError as exc:
            raise FinejobsError(f"the database refused a value, or holds one finejobs cannot read: "
                                f"{_first_line(exc.orig)}") from exc
        except sa.exc.ProgrammingError as exc:
            if isinstance(exc.orig, psycopg.errors.UndefinedTable):
                raise SchemaError(
                    "the finejobs schema is not migrated in this database: run `finejobs migrate`"
                ) from exc
            if isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
                raise SchemaError(
                    f"permission denied: {_first_line(exc.orig)} (run `finejobs migrate` as the schema owner; "
                    "workers need only SELECT, INSERT, UPDATE, DELETE on finejobs_jobs and finejobs_schedules)"
                ) from exc
            raise

    def _fast(self, stmt: sa.TextClause, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One statement in autocommit on the pooled connection's psycopg driver, skipping SQLAlchemy's
        result processing: the hot path (claim, completion, heartbeat) spends most of its Python time there."""
        try:
            with self._autocommit_engine.connect() as conn:
                driver = conn.connection.dbapi_connection
                assert isinstance(driver, psycopg.Connection)
                try:
                    with driver.cursor(row_factory=dict_row) as cur:
                        cur.execute(_compiled_for_psycopg(stmt), params)
                        return _fetch_all(cur)
                except psycopg.OperationalError:
                    conn.invalidate()  # never hand a broken connection back to the pool
                    raise
        except (psycopg.OperationalError, sa.exc.OperationalError) as exc:
            orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            raise DatabaseUnavailable(f"database unavailable ({mask_url(self.url)}): {_first_line(orig)}") from exc

    def migrate(self, *, target: int | None = None) -> list[int]:
        """Apply missing migrations in order (up to ``target``, default all); returns the versions applied.
        Safe to run concurrently."""
        applied: list[int] = []
        with self.transaction() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_MIGRATE})
            metadata.create_all(conn, tables=[migrations_table], checkfirst=True)
            done = set(conn.execute(sa.select(migrations_table.c.version)).scalars())
            for migration in available_migrations():
                if migration.version in done or (target is not None and migration.version > target):
                    continue
                conn.exec_driver_sql(migration.sql)
                conn.execute(migrations_table.insert().values(version=migration.version, name=migration.name))
                applied.append(migration.version)
        return applied

    def schema_version(self) -> int | None:
        """The highest applied migration, or None if finejobs was never migrated here."""
        with self.transaction() as conn:
            exists = conn.execute(sa.text("SELECT to_regclass('finejobs_migrations') IS NOT NULL")).scalar()
            if not exists:
                return None
            version = conn.execute(sa.select(sa.func.max(migrations_table.c.version))).scalar()
            return int(version) if version is not None else None

    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is exactly at this finejobs's latest migration."""
        latest = available_migrations()[-1].version
        version = self.schema_version()
        if version is None or version < latest:
            raise SchemaError(
                f"the finejobs schema is not migrated (at {version or 'nothing'}, need {latest}): "
                "run `finejobs migrate`"
            )
        if version > latest:
            raise SchemaError(
                f"the finejobs schema was migrated by a newer finejobs (version {version} > {latest}): "
                "upgrade finejobs"
            )

    # ---------------------------------------------------------------- enqueue

    def job_insert_many(
        self, jobs: Sequence[NewJob], *, now: datetime, conn: UserConnection | None = None
    ) -> list[Job]:
        """Insert jobs in one statement; returns one Job per input, in order.

        An input whose unique_key is held by an unfinished job (already stored, or earlier in the
        same batch) gets that job back and writes nothing.
        """
        if not jobs:
            return []
        if conn is None:
            with self.transaction(autocommit=True) as own:  # each statement is atomic on its own
                return self._insert(own, jobs, now)
        return self._insert(conn, jobs, now)

    def _insert(self, conn: UserConnection, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        pending = list(range(len(jobs)))
        result: list[Job | None] = [None] * len(jobs)
        for _ in range(5):  # a holder of a key can finish between insert and select: try again
            batch = [jobs[i] for i in pending]
            inserted = _run(conn, _INSERT, {"now": now, "rows": _rows_json(batch), "channel": NOTIFY_CHANNEL})
            # A unique_key is unique within its shard.
            new_ids: dict[tuple[str, str], int] = {}
            keyless = iter(sorted(r["id"] for r in inserted if r["unique_key"] is None))
            for new in inserted:
                if new["unique_key"] is not None:
                    new_ids[(new["shard"], new["unique_key"])] = new["id"]
            held: dict[tuple[str, str], Job] = {}
            missing = sorted({(j.shard, j.unique_key) for j in batch
                              if j.unique_key and (j.shard, j.unique_key) not in new_ids})
            if missing:
                params = {"shards": [m[0] for m in missing], "keys": [m[1] for m in missing]}
                for row in _run(conn, _SELECT_UNFINISHED_BY_KEYS, params):
                    held[(row["shard"], row["unique_key"])] = Job.from_row(row, now=now)
            still: list[int] = []
            made: dict[int, Job] = {}
            for i in pending:
                job = jobs[i]
                key = None if job.unique_key is None else (job.shard, job.unique_key)
                new_id = next(keyless) if key is None else new_ids.get(key)
                if new_id is not None:
                    result[i] = made.get(new_id) or made.setdefault(new_id, _new_job(new_id, job, now))
                elif key in held:
                    result[i] = held[key]
                else:
                    still.append(i)
            pending = still
            if not pending:
                return [job for job in result if job is not None]
        raise FinejobsError("could not insert jobs: unique_key holders kept changing")  # pragma: no cover

    # ---------------------------------------------------------------- the hot path

    def job_claim(
        self, *, owner: str, shard: str, kinds: Sequence[str], limit: int, lease: timedelta, now: datetime
    ) -> list[Job]:
        """Claim up to ``limit`` due, unexpired jobs of the given kinds in one shard, in claim order."""
        if limit <= 0 or not kinds:
            return []
        params = {"owner": owner, "shard": shard, "kinds": list(kinds), "limit": limit, "now": now,
                  "lease_deadline": now + lease}
        rows = self._fast(_CLAIM, params)
        return sorted((Job.from_row(r, now=now) for r in rows), key=_claim_order)

    def job_claim_shards(
        self, *, owner: str, shards: Sequence[str], kinds: Sequence[str], share: int, lease: timedelta,
        now: datetime,
    ) -> list[Job]:
        """Claim up to ``share`` due jobs from each of ``shards`` in one statement (at most
        ``share * len(shards)`` in all), in claim order within each shard."""
        if share <= 0 or not kinds or not shards:
            return []
        if len(shards) == 1:
            return self.job_claim(owner=owner, shard=shards[0], kinds=kinds, limit=share, lease=lease, now=now)
        params = {"owner": owner, "shards": list(shards), "kinds": list(kinds), "share": share, "now": now,
                  "lease_deadline": now + lease}
        rows = self._fast(_CLAIM_SHARDS, params)
        return sorted((Job.from_row(r, now=now) for r in rows), key=_claim_order)

    def shard_list_pending(self) -> list[str]:
        """The shards that have waiting jobs (due or scheduled), in name order."""
        with self.transaction(autocommit=True) as conn:
            return list(conn.execute(_PENDING_SHARDS).scalars())

    def job_complete_many(self, outcomes: Sequence[Outcome], *, owner: str) -> set[int]:
        """Write many outcomes in one statement; returns the ids whose outcome was applied.

        Each write is guarded by state='running', the attempt and the lease owner: an outcome for a
        job that was rescued, cancelled or finished meanwhile changes nothing.
        """
        by_shard: dict[str | None, list[dict[str, Any]]] = {}
        for o in outcomes:
            by_shard.setdefault(o.shard, []).append(
                {"id": o.job_id, "attempt": o.attempt, "claims": o.claims, "state": o.state, "uncount": o.uncount,
                 "run_at": o.run_at.isoformat() if o.run_at else None,
                 "finished_at": o.finished_at.isoformat() if o.finished_at else None,
                 "error": o.error.to_json() if o.error else None, "result": o.result})
        if len(by_shard) > _COMPLETE_SHARDS_APART:
            # Outcomes of many shards (a worker serving many): one statement over every partition's primary
            # key costs less than a round trip per shard.
            by_shard = {None: [row for rows in by_shard.values() for row in rows]}
        applied: set[int] = set()
        for shard, rows in by_shard.items():  # one statement per shard: each touches one partition
            stmt = _COMPLETE_ANY_SHARD if shard is None else _COMPLETE_IN_SHARD
            params = {"owner": owner, "rows": json.dumps(rows), "shard": shard}
            applied.update(r["id"] for r in self._fast(stmt, params))
        return applied

    def job_heartbeat(
        self, *, owner: str, held: Mapping[int, int], lease: timedelta, now: datetime
    ) -> set[int]:
        """Extend the leases of ``held`` (id -> attempt); returns the ids this worker still holds."""
        if not held:
            return set()
        params = {"owner": owner, "ids": list(held), "attempts": list(held.values()), "deadline": now + lease}
        return {r["id"] for r in self._fast(_HEARTBEAT, params)}

    def job_release(
        self, *, owner: str, ids: Sequence[int], now: datetime, error: str, message: str
    ) -> dict[int, JobState]:
        """Give up this worker's running jobs (at shutdown), as a lost lease would: the attempt counts."""
        if not ids:
            return {}
        params = {"owner": owner, "ids": list(ids), "now": now, "now_iso": now.isoformat(),
                  "limit": len(ids), "error": error, "message": message}
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(_RESCUE_MINE, params).all()
        return {row.id: JobState(row.state) for row in rows}

    # ---------------------------------------------------------------- maintenance

    def job_rescue_expired_leases(
        self, *, now: datetime, limit: int = 1000, shards: Sequence[str] | None = None
    ) -> dict[int, JobState]:
        """Return jobs whose lease ran out to ``available`` (or end them if out of attempts or expired).

        ``shards``: only those shards, one statement each (each touches its shard's partition only).
        """
        params = {"now": now, "now_iso": now.isoformat(), "limit": limit, "error": "LeaseExpired",
                  "message": "the worker's lease ran out before the job finished (worker died or hung)"}
        found: dict[int, JobState] = {}
        with self.transaction() as conn:
            for shard in self._locked_shards(conn, _LOCK_RESCUE, _SHARD_LOCK_RESCUE, shards):
                rows = conn.execute(_RESCUE_EXPIRED_LEASES[shard is not None], {**params, "shard": shard}).all()
                found.update((row.id, JobState(row.state)) for row in rows)
        return found

    def job_expire_overdue(self, *, now: datetime, limit: int = 1000, shards: Sequence[str] | None = None) -> int:
        """End waiting jobs whose expires_at has passed as ``expired``."""
        params = {"now": now, "now_iso": now.isoformat(), "limit": limit}
        count = 0
        with self.transaction() as conn:
            for shard in self._locked_shards(conn, _LOCK_EXPIRE, _SHARD_LOCK_EXPIRE, shards):
                count += len(conn.execute(_EXPIRE_OVERDUE[shard is not None], {**params, "shard": shard}).all())
        return count

    def job_prune_finished(
        self, *, retention: Mapping[JobState, timedelta], now: datetime, limit: int = 1000,
        shards: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Delete finished jobs older than their state's retention, at most ``limit`` per state (and shard)."""
        for state in retention:
            if state not in FINAL_STATES:
                raise ValueError(f"retention applies to final states only, not {state}")
        pruned: dict[str, int] = {}
        with self.transaction() as conn:
            for shard in self._locked_shards(conn, _LOCK_PRUNE, _SHARD_LOCK_PRUNE, shards):
                for state, keep in retention.items():
                    params = {"state": state.value, "cutoff": now - keep, "limit": limit, "shard": shard}
                    result = conn.execute(_PRUNE[shard is not None], params)
                    if result.rowcount:
                        pruned[state.value] = pruned.get(state.value, 0) + result.rowcount
        return pruned

    @staticmethod
    def _locked_shards(
        conn: Connection, key: int, shard_key: int, shards: Sequence[str] | None
    ) -> Iterator[str | None]:
        """The shards this transaction won the maintenance lock of (None: every shard, under one lock).
        Another worker doing the same pass holds the lock: skip, it is being done."""
        if shards is None:
            if conn.execute(_TRY_LOCK, {"key": key}).scalar():
                yield None
            return
        for shard in shards:
            if conn.execute(_TRY_SHARD_LOCK, {"key": shard_key, "shard_key": _shard_lock_key(shard)}).scalar():
                yield shard

    # ---------------------------------------------------------------- reading and operating

    def job_get(self, *, job_id: int, now: datetime) -> Job:
        with self.transaction(autocommit=True) as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        return Job.from_row(row, now=now)

    def job_exists(self, *, job_id: int) -> bool:
        with self.transaction(autocommit=True) as conn:
            return conn.execute(sa.select(jobs_table.c.id).where(jobs_table.c.id == job_id)).first() is not None

    def job_list(
        self,
        *,
        now: datetime,
        state: JobState | None = None,
        kind: str | None = None,
        shard: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """The newest jobs first, filtered."""
        query = sa.select(jobs_table).order_by(jobs_table.c.id.desc()).limit(limit)
        if state is JobState.SCHEDULED:
            query = query.where(jobs_table.c.state == "available", jobs_table.c.run_at > now)
        elif state is JobState.AVAILABLE:
            query = query.where(jobs_table.c.state == "available", jobs_table.c.run_at <= now)
        elif state is not None:
            query = query.where(jobs_table.c.state == state.value)
        if kind is not None:
            query = query.where(jobs_table.c.kind == kind)
        if shard is not None:
            query = query.where(jobs_table.c.shard == shard)
        with self.transaction(autocommit=True) as conn:
            return [Job.from_row(r, now=now) for r in conn.execute(query).mappings()]

    def job_cancel(self, *, job_id: int, now: datetime, reason: str = "cancelled by operator") -> Job:
        """Cancel a waiting or running job (a running handler's late outcome is then ignored)."""
        return self._operate(_CANCEL, job_id=job_id, now=now, reason=reason, verb="cancel")

    def job_retry(self, *, job_id: int, now: datetime) -> Job:
        """Run a failed, expired or cancelled job again now, allowing one more attempt."""
        try:
            return self._operate(_RETRY, job_id=job_id, now=now, verb="retry")
        except sa.exc.IntegrityError as exc:
            raise FinejobsError(
                f"cannot retry job {job_id}: another unfinished job holds its unique_key"
            ) from exc

    def job_run_now(self, *, job_id: int, now: datetime) -> Job:
        """Make a waiting job due now."""
        return self._operate(_RUN_NOW, job_id=job_id, now=now, verb="run now")

    def _operate(self, stmt: sa.TextClause, *, job_id: int, now: datetime, verb: str, **extra: Any) -> Job:
        params = {"id": job_id, "now": now, "now_iso": now.isoformat(), **extra}
        with self.transaction(autocommit=True) as conn:
            row = conn.execute(stmt, params).mappings().first()
        if row is None:
            current = self.job_get(job_id=job_id, now=now)  # raises JobNotFound
            raise FinejobsError(f"cannot {verb} job {job_id}: it is {current.state.value}")
        return Job.from_row(row, now=now)

    def job_stats(self, *, now: datetime) -> Stats:
        by_state: dict[str, int] = {s.value: 0 for s in JobState}
        by_kind: dict[str, dict[str, int]] = {}
        by_shard: dict[str, dict[str, int]] = {}
        total = 0
        with self.transaction(autocommit=True) as conn:
            for row in conn.execute(_STATS, {"now": now}):
                by_state[row.state] += row.n
                by_kind.setdefault(row.kind, {}).setdefault(row.state, 0)
                by_kind[row.kind][row.state] += row.n
                by_shard.setdefault(row.shard, {}).setdefault(row.state, 0)
                by_shard[row.shard][row.state] += row.n
                total += row.n
        return Stats(by_state=by_state, by_kind=by_kind, by_shard=by_shard, total=total)

    # ================================================================ shards

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
        """Every shard that has a partition or jobs, with its counts by state."""
        parts = self.shard_partitions()
        by_shard = self.job_stats(now=now).by_shard
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
        if not rows:
            return 0, 0
        keys = [f"{source}/{r['id']}" for r in rows]
        with self.transaction() as conn:
            inserted = conn.execute(_INSERT_MOVED, {"rows": json.dumps(list(rows), default=str), "source": source,
                                                    "now": now, "channel": NOTIFY_CHANNEL}).one().inserted
            present = len(conn.execute(_MOVED_PRESENT, {"shard": shard, "keys": keys}).all())
        return int(inserted), present

    # ================================================================ schedules (finejobs.scheduler)

    def schedule_get(self, *, name: str, now: datetime) -> ScheduleRow | None:
        with self.transaction(autocommit=True) as conn:
            row = conn.execute(_SCHEDULE_GET, {"name": name, "now": now}).mappings().first()
        return ScheduleRow.from_row(row) if row is not None else None

    def schedule_list(self, *, now: datetime, search: str | None = None) -> list[ScheduleRow]:
        """Every schedule whose name, description or kind contains ``search`` (any case), by name."""
        pattern = None
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(_SCHEDULE_LIST, {"pattern": pattern, "now": now}).mappings().all()
        return [ScheduleRow.from_row(r) for r in rows]

    def schedule_insert(self, *, values: Mapping[str, Any], now: datetime) -> int | None:
        """Insert a schedule; returns its id, or None when the name is taken."""
        row = _schedule_columns({k: values[k] for k in ("name", *SCHEDULE_SETTABLE) if k in values})
        stmt = (pg.insert(schedules_table).values(**row, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["name"]).returning(schedules_table.c.id))
        with self.transaction() as conn:
            return conn.execute(stmt).scalar()

    def schedule_upsert_declared(self, *, values: Mapping[str, Any], now: datetime) -> bool:
        """Insert or update a schedule declared in code; True if anything changed."""
        params = dict(values)
        payload = values["payload"]
        params["payload"] = payload if isinstance(payload, str) else json.dumps(payload)
        params["rule"] = json.dumps(values["rule"])
        with self.transaction() as conn:
            return conn.execute(_SCHEDULE_UPSERT_DECLARED, {**params, "now": now}).first() is not None

    def schedule_update(self, *, schedule_id: int, version: int | None, values: Mapping[str, Any],
                        now: datetime) -> bool:
        """Set columns of one schedule (names from SCHEDULE_SETTABLE); with ``version``, only if unchanged."""
        unknown = set(values) - set(SCHEDULE_SETTABLE)
        if unknown:
            raise ValueError(f"not settable on a schedule: {', '.join(sorted(unknown))}")
        t = schedules_table
        stmt = (sa.update(t).where(t.c.id == schedule_id)
                .values(**_schedule_columns(values), version=t.c.version + 1, updated_at=now).returning(t.c.id))
        if version is not None:
            stmt = stmt.where(t.c.version == version)
        with self.transaction() as conn:
            return conn.execute(stmt).first() is not None

    def schedule_delete(self, *, name: str) -> bool:
        t = schedules_table
        with self.transaction() as conn:
            return conn.execute(sa.delete(t).where(t.c.name == name).returning(t.c.id)).first() is not None

    def schedule_set_paused_all(self, *, paused: bool, now: datetime, kind: str | None = None) -> list[str]:
        """Pause (or unpause) every schedule, or every schedule of ``kind``; returns the names changed."""
        with self.transaction() as conn:
            return sorted(conn.execute(_SCHEDULE_PAUSE_ALL, {"paused": paused, "now": now, "kind": kind}).scalars())

    def schedule_due(self, *, now: datetime, limit: int = 100) -> list[ScheduleRow]:
        """Active schedules whose next fire time has come, the most overdue first."""
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(_SCHEDULE_DUE, {"now": now, "limit": limit}).mappings().all()
        return [ScheduleRow.from_row(r) for r in rows]

    def schedule_waiting(self, *, now: datetime) -> list[ScheduleRow]:
        """Adaptive schedules whose last run has finished (or is gone) and that have no next fire yet."""
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(_SCHEDULE_WAITING, {"now": now}).mappings().all()
        return [ScheduleRow.from_row(r) for r in rows]

    def schedule_fire(
        self, *, schedule_id: int, version: int, expected: datetime | None, next_fire_at: datetime | None,
        jobs: Sequence[tuple[NewJob, datetime]], skipped: int, now: datetime, fired: int = 0,
    ) -> list[int] | None:
        """Move next_fire_at from ``expected`` to ``next_fire_at`` and insert one job per (job, fire_at),
        in one transaction; ``fired`` ticks are added to the schedule's count of runs (what a COUNT counts).
        Returns the new job ids, or None when another scheduler (or an operator) got there first. A tick
        that already has its job is not inserted again."""
        last_fire = max((fire for _, fire in jobs), default=None)
        advance = {"id": schedule_id, "version": version, "expected": expected, "next_fire_at": next_fire_at,
                   "skipped": skipped, "fired": fired, "last_fire_at": last_fire, "now": now}
        with self.transaction() as conn:
            if conn.execute(_SCHEDULE_ADVANCE, advance).first() is None:
                return None
            if not jobs:
                return []
            rows = json.dumps([
                {"kind": j.kind, "shard": j.shard, "priority": j.priority,
                 "run_at": j.run_at.isoformat(), "expires_at": j.expires_at.isoformat() if j.expires_at else None,
                 "max_attempts": j.max_attempts, "fire_at": fire.isoformat()}
                for j, fire in jobs
            ])
            params = {"schedule_id": schedule_id, "rows": rows, "now": now, "channel": NOTIFY_CHANNEL}
            return list(conn.execute(_SCHEDULE_INSERT_JOBS, params).scalars())

    def schedule_set_error(self, *, schedule_id: int, error: str, now: datetime) -> None:
        t = schedules_table
        with self.transaction() as conn:
            conn.execute(sa.update(t).where(t.c.id == schedule_id).values(last_error=error[:2000]))

    def schedule_runs(self, *, schedule_id: int, limit: int = 10) -> list[ScheduleRunRow]:
        """The jobs a schedule made, newest tick first (finished jobs are pruned after their retention)."""
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(_SCHEDULE_RUNS, {"schedule_id": schedule_id, "limit": limit}).mappings().all()
        return [
            ScheduleRunRow(job_id=r["job_id"], fire_at=r["fire_at"], state=r["state"], result=r["result"],
                           run_at=r["run_at"], started_at=r["started_at"], finished_at=r["finished_at"],
                           attempt=r["attempt"], max_attempts=r["max_attempts"],
                           error=f"{r['error_type']}: {r['error_message']}" if r["error_type"] else None)
            for r in rows
        ]


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


def _shard_lock_key(shard: str) -> int:
    """A stable int4 for the advisory lock of one shard (blake2b: the same in every process)."""
    return int.from_bytes(hashlib.blake2b(shard.encode("utf-8"), digest_size=4).digest(), "big", signed=True)


def _claim_order(job: Job) -> tuple[int, datetime, int]:
    return (-job.priority, job.run_at, job.id)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip().splitlines()
    return mask_url(text[0]) if text else type(exc).__name__


def _rows_json(jobs: Sequence[NewJob]) -> str:
    """The jobs as one JSON array; payloads are spliced in as the JSON text they already are."""
    dumps = json.dumps
    quoted = functools.lru_cache(maxsize=256)(dumps)  # kinds and shards repeat across a batch
    parts = [
        f'{{"kind":{quoted(j.kind)},"shard":{quoted(j.shard)},"payload":{j.payload_json},'
        f'"priority":{j.priority},"run_at":"{j.run_at.isoformat()}",'
        f'"expires_at":{dumps(j.expires_at.isoformat()) if j.expires_at else "null"},'
        f'"max_attempts":{j.max_attempts},"unique_key":{dumps(j.unique_key)}}}'
        for j in jobs
    ]
    return "[" + ",".join(parts) + "]"


def _new_job(job_id: int, job: NewJob, now: datetime) -> Job:
    """The Job just inserted, built from what we sent (saves reading every row back)."""
    return Job(
        id=job_id, kind=job.kind, shard=job.shard, payload=job.payload,
        state=JobState.SCHEDULED if job.run_at > now else JobState.AVAILABLE,
        priority=job.priority, run_at=job.run_at, expires_at=job.expires_at, attempt=0,
        max_attempts=job.max_attempts, unique_key=job.unique_key, lease_owner=None, lease_expires_at=None,
        errors=(), created_at=now, started_at=None, finished_at=None,
    )


_connection_ids: weakref.WeakKeyDictionary[psycopg.Connection[Any], str] = weakref.WeakKeyDictionary()


def connection_database_id(conn: UserConnection) -> str:
    """The identity (see JobStore.database_id) of the database a caller's connection is on; asked once per
    driver connection."""
    driver: Any = conn
    if isinstance(driver, Session):
        driver = driver.connection()
    if isinstance(driver, Connection):
        driver = driver.connection.dbapi_connection
    if not isinstance(driver, psycopg.Connection):
        return str(_run(conn, _DATABASE_ID, {})[0]["id"])
    known = _connection_ids.get(driver)
    if known is None:
        known = _connection_ids[driver] = str(_run(conn, _DATABASE_ID, {})[0]["id"])
    return known


class Notifications:
    """A connection of its own that LISTENs on finejobs' channel (enqueue and pause notifications): the
    worker's wake-up hint. Connection failures raise DatabaseUnavailable; ``close()`` ends it."""

    def __init__(self, conninfo: str, url: str) -> None:
        self._url = url
        try:
            self._conn: psycopg.Connection[Any] = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
            self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot listen on {mask_url(url)}: {_first_line(exc)}") from exc

    @property
    def closed(self) -> bool:
        return bool(self._conn.closed)

    def wait(self, timeout: float, *, stop: Callable[[], bool] = lambda: False) -> list[str]:
        """The payloads of the notifications that arrive within ``timeout`` seconds."""
        found = []
        try:
            for note in self._conn.notifies(timeout=timeout):
                found.append(note.payload)
                if stop():
                    break
        except psycopg.OperationalError as exc:
            self.close()
            raise DatabaseUnavailable(f"the listening connection was lost: {_first_line(exc)}") from exc
        return found

    def close(self) -> None:
        self._conn.close()


def _fetch_all(cur: psycopg.Cursor[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a statement's (client-side, already received) result. A value the driver cannot turn
    into Python (a timestamp past year 9999 or 'infinity', JSON nested past the recursion limit: rows
    written around finejobs' checks) becomes ``Undecodable`` instead of failing the whole result, so that
    one bad row cannot stop a worker: Job.from_row marks it defective and the worker fails that job alone."""
    if cur.description is None:
        return []
    try:
        return cur.fetchall()
    except Exception:  # nothing is read from the network here: every error is one of decoding
        result = cur.pgresult
        assert result is not None
        names = [column.name for column in cur.description]
        rows = []
        for i in range(result.ntuples):
            row: dict[str, Any] = {}
            for j, name in enumerate(names):
                raw = result.get_value(i, j)
                if raw is None:
                    row[name] = None
                    continue
                loader = cur.adapters.get_loader(result.ftype(j), psycopg.pq.Format(result.fformat(j)))
                try:
                    row[name] = loader(result.ftype(j), cur.connection).load(raw) if loader else bytes(raw)
                except Exception as exc:
                    row[name] = Undecodable(f"{type(exc).__name__}: {str(exc)[:200]}")
            rows.append(row)
        return rows


def _run(conn: UserConnection, stmt: sa.TextClause, params: Mapping[str, Any]) -> list[Mapping[Any, Any]]:
    """Run a statement on our connection or on a caller's (SQLAlchemy or psycopg) connection."""
    if isinstance(conn, Session):
        conn = conn.connection()
    if isinstance(conn, Connection):
        result = conn.execute(stmt, dict(params))
        return list(result.mappings()) if result.returns_rows else []
    if isinstance(conn, psycopg.Connection):
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(_compiled_for_psycopg(stmt), dict(params))
            return list(_fetch_all(cur))
    raise TypeError(
        f"conn must be a SQLAlchemy Connection or Session, or a psycopg Connection, not {type(conn).__name__}"
    )
