"""Emptying a test database: what tests/conftest.py's clean_db and the Citus suite's fixtures both do."""

from __future__ import annotations

import psycopg
from psycopg import sql

from finejobs.store import libpq_url


def empty_tables(url: str) -> None:
    """No rows in any finejobs table (jobs, schedules, moves, pauses, registry, audit, groups, pipelines...) but
    the migrations and the database id, and no shard partitions but the default one."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND c.relname LIKE 'finejobs\\_%' AND c.relname NOT IN ('finejobs_migrations', 'finejobs_database') "
            "ORDER BY 1")]
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
            sql.SQL(", ").join(sql.Identifier(name) for name in tables)))
        partitions = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'finejobs_jobs'::regclass AND c.relname <> 'finejobs_jobs_other'").fetchall()
        for (name,) in partitions:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
