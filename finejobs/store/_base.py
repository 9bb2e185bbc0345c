"""Connections: URLs, the engine, short transactions, the fast path of single statements, lenient row
decoding, the LISTEN connection. Every other store module builds on StoreBase.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import JsonbLoader, JsonLoader
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from finejobs.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    FinejobsError,
    SchemaError,
)
from finejobs.jobs import Undecodable
from finejobs.masking import mask_passwords, password_forms
from finejobs.store.citus import engine_is_citus, install_plan_cache
from finejobs.store.tables import NOTIFY_CHANNEL


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


_DATABASE_ID = sa.text("SELECT id::text || '/' || current_database() AS id FROM finejobs_database")


_PSYCOPG_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=64)
def _compiled_for_psycopg(stmt: sa.TextClause) -> str:
    return str(stmt.compile(dialect=_PSYCOPG_DIALECT))


UserConnection = Connection | Session | psycopg.Connection[Any]


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip().splitlines()
    return mask_url(text[0]) if text else type(exc).__name__


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

    def wait(self, timeout: float, on_note: Callable[[str], None], *,
             stop: Callable[[], bool] = lambda: False) -> int:
        """Wait up to ``timeout`` seconds, calling ``on_note`` with each notification's payload the moment it
        arrives (a wake-up must not wait for the timeout); returns how many came."""
        found = 0
        try:
            for note in self._conn.notifies(timeout=timeout):
                on_note(note.payload)
                found += 1
                if stop():
                    break
        except psycopg.OperationalError as exc:
            self.close()
            raise DatabaseUnavailable(f"the listening connection was lost: {_first_line(exc)}") from exc
        return found

    def close(self) -> None:
        self._conn.close()


def _dict_rows(cursor: Any) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """psycopg's dict_row without its column descriptions: the names straight from the result (finejobs' own
    statements, ASCII column names). A few microseconds a statement on the hot path."""
    result = cursor.pgresult
    if result is None or not result.nfields:
        return dict_row(cursor)
    names = [result.fname(i).decode() for i in range(result.nfields)]

    def make(values: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(names, values, strict=True))

    return make


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


def _own_loaders(cur: psycopg.Cursor[Any]) -> None:
    """On a caller's psycopg connection, read json, jsonb and timestamptz as finejobs does, whatever loaders the
    caller's connection has (Django's give jsonb as text, and timestamptz in its own time zone). The cursor's
    adapters are its own copy: the caller's connection is left as it was."""
    cur.adapters.register_loader("jsonb", JsonbLoader)
    cur.adapters.register_loader("json", JsonLoader)
    cur.adapters.register_loader("timestamptz", TimestamptzLoader)


def _run(conn: UserConnection, stmt: sa.TextClause, params: Mapping[str, Any]) -> list[Mapping[Any, Any]]:
    """Run a statement on our connection or on a caller's (SQLAlchemy or psycopg) connection."""
    if isinstance(conn, Session):
        conn = conn.connection()
    if isinstance(conn, Connection):
        result = conn.execute(stmt, dict(params))
        return list(result.mappings()) if result.returns_rows else []
    if isinstance(conn, psycopg.Connection):
        with conn.cursor(row_factory=dict_row) as cur:
            _own_loaders(cur)
            cur.execute(_compiled_for_psycopg(stmt), dict(params))
            return list(_fetch_all(cur))
    raise TypeError(
        f"conn must be a SQLAlchemy Connection or Session, or a psycopg Connection, not {type(conn).__name__}"
    )


class StoreBase:
    """An engine and the ways to run statements on it (the store's other parts build on this)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Single statements on the hot path run in autocommit: one round trip instead of BEGIN/stmt/COMMIT.
        self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 5) -> Self:
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
            # On Citus, install_plan_cache sets it back to auto on each connection (finejobs.store.citus).
            connect_args={"connect_timeout": 10, "options": "-c plan_cache_mode=force_generic_plan"},
        )
        install_plan_cache(engine)
        return cls(engine)

    @property
    def citus(self) -> bool:
        """Whether this database has the citus extension (asked once per engine; docs/citus.md)."""
        try:
            return engine_is_citus(self.engine)
        except sa.exc.DBAPIError as exc:
            translated = self._translate(exc.orig)
            if translated is None:
                raise
            raise translated from exc

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
        except sa.exc.DBAPIError as exc:
            translated = self._translate(exc.orig)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, orig: BaseException | None) -> FinejobsError | None:
        """The finejobs error for a driver error (None: let it through as it is)."""
        if isinstance(orig, psycopg.OperationalError):
            return DatabaseUnavailable(f"database unavailable ({mask_url(self.url)}): {_first_line(orig)}")
        if isinstance(orig, psycopg.DataError):
            return FinejobsError(f"the database refused a value, or holds one finejobs cannot read: "
                                 f"{_first_line(orig)}")
        if isinstance(orig, psycopg.errors.UndefinedTable):
            return SchemaError("the finejobs schema is not migrated in this database: run `finejobs migrate`")
        if isinstance(orig, psycopg.errors.InsufficientPrivilege):
            return SchemaError(
                f"permission denied: {_first_line(orig)} (run `finejobs migrate` as the schema owner; "
                "workers need only SELECT, INSERT, UPDATE, DELETE on finejobs_jobs and finejobs_schedules)")
        return None

    def _fast(self, stmt: sa.TextClause, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One statement in autocommit on a pooled connection's psycopg driver, skipping SQLAlchemy's
        Connection and result processing: the hot path (enqueue, claim, completion, heartbeat) spent most of its
        Python time there (about 50 us of CPU a statement). The driver is switched to autocommit for the
        statement and back before it returns to the pool (both are client-side when the connection is idle)."""
        try:
            fairy = self.engine.raw_connection()
            broken = False
            try:
                driver = fairy.dbapi_connection
                assert isinstance(driver, psycopg.Connection)
                driver.autocommit = True
                try:
                    with driver.cursor(row_factory=_dict_rows) as cur:
                        cur.execute(_compiled_for_psycopg(stmt), params)
                        return _fetch_all(cur)
                finally:
                    if driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                        driver.autocommit = False
                    else:  # broken (or, impossibly, in a transaction)
                        broken = True
            except psycopg.OperationalError:
                broken = True
                raise
            finally:
                if broken:
                    fairy.invalidate()  # never hand a broken connection back to the pool
                fairy.close()
        except (psycopg.Error, sa.exc.DBAPIError) as exc:
            translated = self._translate(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc)
            if translated is None:
                raise
            raise translated from exc
