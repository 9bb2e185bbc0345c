"""Citus: is the ``citus`` extension installed in this database, and the placement of finejobs' tables there.

On Citus (docs/citus.md) ``finejobs_jobs`` is a distributed table whose distribution column is ``shard``: every
finejobs shard lives in exactly one Citus shard, and every statement that locks or updates job rows names one
shard (a router query, the case in which Citus supports ``FOR UPDATE SKIP LOCKED``). The schema already suits
it: the primary key is ``(id, shard)`` and every unique index of the job table leads with ``shard`` (0004).
Every other finejobs table stays an ordinary table on the coordinator (they are small, and changed in the
same transactions as the job rows: a reference table would make each of those writes a two-phase commit on
every node, and Citus refuses ``FOR UPDATE SKIP LOCKED`` on reference tables).

Nothing here changes plain PostgreSQL: ``distribute`` does nothing where the extension is absent.
"""

from __future__ import annotations

import weakref
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from finejobs.errors import ConfigurationError

# One statement both engines answer: is the extension installed in this database (not merely available)?
IS_CITUS_SQL = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"

# The tables Citus distributes by ``shard``. Partitions of a distributed table are distributed with it
# (finejobs_jobs_other, and a shard's own partition made before the conversion).
DISTRIBUTED = ("finejobs_jobs",)

_IS_DISTRIBUTED = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = CAST(:table AS regclass))"
)

_DISTRIBUTE = sa.text("SELECT create_distributed_table(CAST(:table AS regclass), 'shard', colocate_with => 'none')")

# create_distributed_table copies a table's rows into its shards and leaves the coordinator's own copy behind
# (unreadable: every query now goes to the shards); this removes it.
_TRUNCATE_LOCAL = sa.text("SELECT truncate_local_data_after_distributing_table(CAST(:table AS regclass))")

_HAS_ROWS = sa.text("SELECT EXISTS (SELECT 1 FROM finejobs_jobs)")

# Whether each engine has been seen to be Citus (asked once per engine, on its first connection).
_known: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def driver_is_citus(driver: psycopg.Connection[Any]) -> bool:
    """Ask a raw psycopg connection (in a transaction of its own, ended here)."""
    row = driver.execute(IS_CITUS_SQL).fetchone()
    if not driver.autocommit:
        driver.commit()
    return bool(row and row[0])


def engine_is_citus(engine: Engine) -> bool:
    """Whether ``engine``'s database has the citus extension (cached per engine)."""
    known = _known.get(engine)
    if known is None:
        with engine.connect() as conn:
            known = _known.get(engine)  # the first connection's listener may have asked already
            if known is None:
                known = bool(conn.execute(sa.text(IS_CITUS_SQL)).scalar())
        _known[engine] = known
    return known


def install_plan_cache(engine: Engine) -> None:
    """Plan caching by engine, on each new connection of ``engine``: the URL's options give every connection
    ``plan_cache_mode=force_generic_plan`` (plain PostgreSQL: see StoreBase.from_url); on Citus it is set back
    to ``auto``, since Citus cannot make a distributed plan from a generic plan of most finejobs statements
    ("could not create distributed plan ... parameters in SQL functions") and itself keeps generic plans of
    router queries cheap (it prunes to the shard at execution). Plain PostgreSQL pays one query, on the
    engine's first connection."""

    def on_connect(driver: Any, _record: Any) -> None:
        if not isinstance(driver, psycopg.Connection):
            return
        citus = _known.get(engine)
        if citus is None:
            citus = _known[engine] = driver_is_citus(driver)
        if citus:
            driver.execute("SET plan_cache_mode = auto")
            if not driver.autocommit:
                driver.commit()

    sa.event.listen(engine, "connect", on_connect)


def statements(script: str) -> list[str]:
    """The statements of a migration script, one by one: Citus cannot pass on DDL of a distributed table that
    came in a string of several commands ("cannot insert multiple commands into a prepared statement").
    Splits at semicolons outside quotes, identifiers and comments (finejobs' migrations have no $$ bodies)."""
    found: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(script):
        ch = script[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif script.startswith("--", i):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
            continue
        elif ch == ";":
            found.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    found.append("".join(current).strip())
    return [stmt for stmt in found if stmt]


def distribute(conn: Connection) -> list[str]:
    """Make the job table distributed by ``shard`` if it is not yet (idempotent); returns the tables it
    distributed. Run in the migration's transaction, under its advisory lock. Rows of a plain table are
    copied into the shards (an existing finejobs database converts in place: docs/citus.md)."""
    done: list[str] = []
    if not conn.execute(sa.text("SELECT to_regclass('finejobs_jobs_other') IS NOT NULL")).scalar():
        return done  # migrated only up to before 0004 (the job table is made again there): distributed later
    for table in DISTRIBUTED:
        if conn.execute(_IS_DISTRIBUTED, {"table": table}).scalar():
            continue
        had_rows = conn.execute(_HAS_ROWS).scalar()
        conn.execute(_DISTRIBUTE, {"table": table})
        if had_rows:
            conn.execute(_TRUNCATE_LOCAL, {"table": table})
        done.append(table)
    return done


def refuse(what: str, instead: str) -> ConfigurationError:
    """The error for a finejobs feature that Citus does its own way (docs/citus.md)."""
    return ConfigurationError(f"{what} is not supported on Citus: {instead} (see docs/citus.md)")


def as_array(value: str) -> str:
    """SQL for ``jsonb_build_array(value)`` with IMMUTABLE functions only (NULL when ``value`` is NULL)."""
    return f"jsonb_insert(CAST('[]' AS jsonb), '{{0}}', {value})"


def error_entry(*, attempt: str, error: str, message: str, worker: str) -> str:
    """SQL for ``jsonb_build_array(jsonb_build_object(...))`` of one entry of a job's ``errors`` (to append with
    ``||``), with IMMUTABLE functions only: jsonb_build_object is STABLE, and Citus refuses STABLE functions over
    columns in an UPDATE. jsonb keeps an object's keys in its own order, so the value is the same (and so is
    what ``||`` makes of it, even on a row whose errors are not an array). ``attempt`` is an integer
    expression, the others text expressions (``NULL`` allowed)."""
    return as_array(f"jsonb_set(jsonb_object(ARRAY['at', 'error', 'message', 'traceback', 'worker'], "
                    f"ARRAY[CAST(:now_iso AS text), {error}, {message}, NULL, {worker}]), '{{attempt}}', "
                    f"CAST(CAST({attempt} AS text) AS jsonb))")


# Which shards have work for a maintenance pass (Citus: each pass then runs one router statement a shard).
# GROUP BY the distribution column is pushed down whole to every Citus shard.
SHARDS_WITH_LOST_LEASES = sa.text(
    "SELECT shard FROM finejobs_jobs WHERE state = 'running' AND lease_expires_at < :now GROUP BY shard")
SHARDS_WITH_OVERDUE = sa.text(
    "SELECT shard FROM finejobs_jobs WHERE state = 'available' AND expires_at IS NOT NULL AND expires_at <= :now "
    "GROUP BY shard")
SHARDS_WITH_FINISHED = sa.text(
    "SELECT shard FROM finejobs_jobs WHERE state = ANY(CAST(:states AS text[])) AND finished_at < :cutoff "
    "GROUP BY shard")
# The shards with waiting jobs (plain PostgreSQL: a recursive skip scan, which Citus refuses across shards).
PENDING_SHARDS = sa.text("SELECT shard FROM finejobs_jobs WHERE state = 'available' GROUP BY shard ORDER BY shard")
