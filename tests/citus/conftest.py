"""The Citus suite: finejobs on a real Citus cluster, the job table distributed by shard (docs/citus.md).

Runs only when FINEJOBS_CITUS_URL names a Citus coordinator (any database on it with the citus extension and
the workers added: this suite makes databases of its own on that cluster, never works inside the one named);
otherwise every test here is skipped, with that reason.

The fixtures of tests/conftest.py (``database_url``, ``clean_db``, ``queue``, ``db``, ``fresh``, ...) are
pointed at the cluster here, so test modules of tests/integration re-exported by ``test_reuse_*.py`` run on
Citus unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import bench.citus
import finejobs
from finejobs.store import libpq_url
from tests.cleaning import empty_tables

CITUS_URL_ENV = "FINEJOBS_CITUS_URL"
CITUS_URL = os.environ.get(CITUS_URL_ENV, "")
HERE = Path(__file__).parent
SKIP_REASON = (f"{CITUS_URL_ENV} is not set: the Citus suite needs a Citus coordinator "
               "(e.g. postgresql://postgres@127.0.0.1:9700/postgres; see docs/citus.md)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CITUS_URL:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


def create_citus_database(prefix: str = "finejobs_citus") -> str:
    """A new database on the cluster, the citus extension on every node and the workers added (bench.citus)."""
    return bench.citus.create_citus_database(CITUS_URL, prefix=prefix)


def drop_citus_database(url: str) -> None:
    bench.citus.drop_citus_database(CITUS_URL, url)


@pytest.fixture(scope="session")
def citus_url() -> str:
    if not CITUS_URL:
        pytest.skip(SKIP_REASON)
    return CITUS_URL


@pytest.fixture(scope="session")
def server_url(citus_url: str) -> str:
    return citus_url


@pytest.fixture(scope="session")
def database_url(citus_url: str) -> Iterator[str]:
    """A migrated (so: distributed) Citus database of this test session's own."""
    url = create_citus_database()
    finejobs.Queue(url).migrate()
    yield url
    drop_citus_database(url)


@pytest.fixture
def empty_database_url(citus_url: str) -> Iterator[str]:
    """A brand-new Citus database with nothing of finejobs in it (for migration tests)."""
    url = create_citus_database(prefix="finejobs_citus_empty")
    yield url
    drop_citus_database(url)


@pytest.fixture
def clean_db(database_url: str) -> str:
    empty_tables(database_url)
    return database_url


@pytest.fixture
def dml_role(server_url: str, database_url: str) -> Iterator[Callable[..., str]]:
    """tests/conftest.py's dml_role on the cluster: the role's grants are dropped on every node before it."""
    from tests.conftest import dml_role as plain

    made = plain.__wrapped__(server_url, database_url)  # type: ignore[attr-defined]
    make = next(made)
    roles: list[str] = []

    def tracked(*args: Any, **kwargs: Any) -> str:
        url = make(*args, **kwargs)
        roles.append(psycopg.conninfo.conninfo_to_dict(libpq_url(url))["user"])
        return url

    yield tracked
    dbname = psycopg.conninfo.conninfo_to_dict(libpq_url(database_url))["dbname"]
    user = psycopg.conninfo.conninfo_to_dict(libpq_url(CITUS_URL)).get("user", "postgres")
    with psycopg.connect(libpq_url(CITUS_URL)) as conn:
        nodes = conn.execute("SELECT nodename, nodeport FROM pg_dist_node").fetchall()
    for host, port in nodes:
        with psycopg.connect(host=host, port=port, dbname=dbname, user=user, autocommit=True) as node:
            for role in roles:
                node.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with contextlib.suppress(StopIteration):
        next(made)
