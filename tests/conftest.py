"""Shared fixtures: a real PostgreSQL for every test that touches jobs.

The server comes from FINEJOBS_DATABASE_URL, else 127.0.0.1:5432, else an embedded Postgres
(finejobs.devdb). Tests never work inside the named database: the session creates its own
database on that server, migrated once, and each test starts from an empty job table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

import finejobs
from finejobs import devdb
from finejobs.store import libpq_url
from finejobs.testing import FakeClock
from tests.cleaning import empty_tables

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def create_database(server_url: str, prefix: str = "finejobs_test") -> str:
    return devdb.create_database(server_url, prefix=prefix)


def drop_database(server_url: str, url: str) -> None:
    devdb.drop_database(server_url, url)


@pytest.fixture(scope="session")
def server_url() -> str:
    return devdb.discover_server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A migrated database of this test session's own."""
    url = create_database(server_url)
    finejobs.Queue(url).migrate()
    yield url
    drop_database(server_url, url)


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A brand-new database with nothing in it (for migration tests)."""
    url = create_database(server_url, prefix="finejobs_empty")
    yield url
    drop_database(server_url, url)


@pytest.fixture
def clean_db(database_url: str) -> str:
    """The session's database with no rows in any finejobs table (jobs, schedules, moves, pauses, registry,
    audit, groups, pipelines...) but the migrations and the database id, and no shard partitions but the
    default one."""
    empty_tables(database_url)
    return database_url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def fresh(empty_database_url: str, clock: FakeClock) -> Iterator[finejobs.Queue]:
    """A Queue on a migrated database of this test's own (for tests that add shard partitions), with one
    no-op job kind "ok" and the FakeClock."""
    q = finejobs.Queue(empty_database_url, clock=clock)
    q.migrate()

    @q.job("ok")
    def ok(payload: dict[str, object]) -> None:
        pass

    yield q
    q.close()


@pytest.fixture
def queue(clean_db: str, clock: FakeClock) -> Iterator[finejobs.Queue]:
    """A Queue on the session's database, empty, driven by a FakeClock starting at T0."""
    q = finejobs.Queue(clean_db, clock=clock)
    yield q
    q.close()


@pytest.fixture
def db(clean_db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A raw autocommit connection for asserting on rows."""
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        yield conn


@pytest.fixture
def dml_role(server_url: str, database_url: str) -> Iterator[Callable[..., str]]:
    """Make a login role that may only read and write finejobs' tables (no DDL); returns its URL.

    The grants are the ones docs/guarantees.md documents: DML on every finejobs table, SELECT on the
    migrations table.
    """
    made: list[str] = []

    def make(connection_limit: int = -1) -> str:
        role = f"finejobs_app_{uuid.uuid4().hex[:8]}"
        made.append(role)
        ident = sql.Identifier(role)
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {}")
                         .format(ident, sql.Literal(connection_limit)))
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            conn.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'finejobs%%' "
                "AND tablename <> 'finejobs_migrations' AND schemaname = current_schema()")]
            for table in tables:
                conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}")
                             .format(sql.Identifier(table), ident))
            conn.execute(sql.SQL("GRANT SELECT ON finejobs_migrations TO {}").format(ident))
        info = psycopg.conninfo.conninfo_to_dict(libpq_url(database_url))
        return f"postgresql://{role}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"

    yield make
    for role in made:
        ident = sql.Identifier(role)
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


@pytest.fixture
def ping(queue: finejobs.Queue) -> finejobs.JobKind[Any, Any]:
    """A no-op job kind "ping" on the ``queue`` fixture (the schedule tests' kind)."""
    @queue.job("ping")
    def ping(payload: dict[str, Any]) -> None:
        pass

    return ping
