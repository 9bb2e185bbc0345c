"""Fixtures for the acceptance tests (helpers live in helpers.py)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import APP, REPO_ROOT, Db, WorkerProcess, cli_env, wait_for


@pytest.fixture
def jobdb(clean_db: str) -> Iterator[Db]:
    """The session's migrated database, emptied, with a connection for assertions."""
    conn = Db(clean_db)
    yield conn
    conn.close()


@pytest.fixture
def start_worker(clean_db: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``finejobs worker --app tests.acceptance.app_jobs:queue ...``; killed at teardown if still up."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        n = len(started)
        name = f"finejobs-acceptance-{uuid.uuid4().hex[:8]}"
        log_path, err_path = tmp_path / f"worker{n}.out", tmp_path / f"worker{n}.err"
        with log_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "finejobs", "worker", "--app", APP, "--poll-interval", "0.1", *args],
                cwd=REPO_ROOT, env=cli_env(clean_db, PGAPPNAME=name), stdout=out, stderr=err,
            )
        worker = WorkerProcess(proc, log_path, err_path, name)
        started.append(worker)
        wait_for(lambda: "started:" in worker.log or proc.poll() is not None, timeout=15, what="worker start",
                 context=worker.describe)
        assert proc.poll() is None, f"worker exited early ({proc.returncode}): {worker.stderr}{worker.log}"
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(10)
