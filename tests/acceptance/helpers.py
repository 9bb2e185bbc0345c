"""Helpers for the acceptance tests: run the real ``finejobs`` CLI in a subprocess.

Each command runs as ``python -m finejobs ...`` with cwd at the repository root (so that
``--app tests.acceptance.app_jobs:queue`` imports) and FINEJOBS_DATABASE_URL set to the test's database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from finejobs.store import libpq_url

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "tests.acceptance.app_jobs:queue"
CLI_TIMEOUT = 30.0


def cli_env(url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINEJOBS_")}
    if url is not None:
        env["FINEJOBS_DATABASE_URL"] = url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def ok(self) -> Result:
        assert self.code == 0, f"finejobs {' '.join(self.args)} exited {self.code}: {self.stderr}"
        return self


def run_cli(*args: str, url: str | None, stdin: str | None = None, **env: str) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "finejobs", *args],
        cwd=REPO_ROOT, env=cli_env(url, **env), input=stdin, capture_output=True, text=True,
        timeout=CLI_TIMEOUT,
    )
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition",
             context: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds.

    ``context`` is called on timeout, to put more detail (a worker's log) in the failure message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(0.05)


class Db:
    """A raw autocommit connection to the test database, for asserting on rows."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = psycopg.connect(libpq_url(url), autocommit=True)

    def states(self) -> dict[int, str]:
        return dict(self.conn.execute("SELECT id, state FROM finejobs_jobs ORDER BY id").fetchall())

    def state(self, job_id: int) -> str:
        return self.states()[job_id]

    def backends(self, application_name: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    err_path: Path
    application_name: str

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def describe(self) -> str:
        return f"worker exit={self.proc.poll()}\n--- stdout\n{self.log}--- stderr\n{self.stderr}"

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


