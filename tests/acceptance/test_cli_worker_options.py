"""Acceptance: ``finejobs worker``'s options that the Python API had first (--retention, --no-scheduler,
--maintenance-interval, --no-local-schedules...) and local schedules in real worker processes, shown by
``finejobs workers``."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import finejobs

from .helpers import REPO_ROOT, Db, WorkerProcess, cli_env, run_cli, wait_for

APP = "tests.acceptance.app_local:queue"
LOCAL_LINE = "local schedule 'cache-expiry' (tick"


@pytest.fixture(autouse=True)
def no_registry_rows(jobdb: Db) -> Iterator[None]:
    jobdb.conn.execute("TRUNCATE finejobs_workers")
    yield
    jobdb.conn.execute("TRUNCATE finejobs_workers")


@pytest.fixture
def workers(clean_db: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``finejobs worker --app APP ...`` processes (not waiting for them); killed at teardown."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        n = len(started)
        log_path, err_path = tmp_path / f"worker{n}.out", tmp_path / f"worker{n}.err"
        with log_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "finejobs", "worker", "--app", APP, "--poll-interval", "0.1", *args],
                cwd=REPO_ROOT, env=cli_env(clean_db), stdout=out, stderr=err)
        worker = WorkerProcess(proc, log_path, err_path, f"options-{uuid.uuid4().hex[:6]}")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(10)


def test_a_local_schedule_runs_in_every_worker_process_and_workers_lists_it(
        clean_db: str, workers: Callable[..., WorkerProcess]) -> None:
    a = workers("--worker-id", "worker-a")
    b = workers("--worker-id", "worker-b")
    c = workers("--worker-id", "worker-c", "--no-local-schedules")
    for w in (a, b):
        wait_for(lambda w=w: w.log.count(LOCAL_LINE) >= 3, timeout=20, what="local schedule calls",  # type: ignore[misc]
                 context=w.describe)
    wait_for(lambda: "started:" in c.log, timeout=20, what="worker c", context=c.describe)

    def rows() -> dict[str, Any]:
        return {w["id"]: w for w in run_cli("workers", "--json", url=clean_db).ok().json()}

    found = wait_for(lambda: r if len(r := rows()) == 3 else None, timeout=10, what="three registry rows")
    for name in ("worker-a", "worker-b"):
        [entry] = found[name]["info"]["local_schedules"]
        assert entry["name"] == "cache-expiry" and entry["calls"] == "expire_cache"
        assert entry["rule"] == "every 0.3 seconds" and entry["next_run_at"]
    assert found["worker-c"]["info"] == {}
    assert LOCAL_LINE not in c.log
    text = run_cli("workers", url=clean_db).ok().stdout
    assert "local schedules (run in each worker process):" in text
    listed = [line.split() for line in text.splitlines() if "cache-expiry" in line]
    assert sorted(line[0] for line in listed) == ["worker-a", "worker-b"]
    for w in (a, b, c):
        assert w.terminate() == 0, w.describe()
    assert "Traceback" not in a.stderr + a.log


def test_no_scheduler_and_retention_per_state(clean_db: str, jobdb: Db,
                                              workers: Callable[..., WorkerProcess]) -> None:
    w = workers("--no-scheduler", "--no-local-schedules", "--retention", "succeeded=1s",
                "--maintenance-interval", "0.2")
    wait_for(lambda: "started:" in w.log, timeout=20, what="worker start", context=w.describe)
    queue = finejobs.Queue(clean_db)
    try:
        for name in ("touch", "refuse"):
            queue.job(name, retry=finejobs.Retry(max_attempts=1))(lambda payload: None)
        touched, refused = queue.enqueue("touch", {}).id, queue.enqueue("refuse", {}).id
        wait_for(lambda: jobdb.states().get(refused) == "failed", timeout=15, what="the failed job",
                 context=w.describe)
        wait_for(lambda: touched not in jobdb.states(), timeout=15, what="the succeeded job pruned after 1 s",
                 context=w.describe)
        assert jobdb.states() == {refused: "failed"}  # failed keeps its default retention (7 days)
        assert queue.schedules.list() == []  # --no-scheduler: the schedule declared in code was not written
    finally:
        queue.close()
    assert LOCAL_LINE not in w.log
    assert w.terminate() == 0


@pytest.mark.parametrize(("args", "message"), [
    (("--retention", "succeeded=7d,sucess=1d"), "'sucess' is not a final state"),
    (("--retention", "failed"), "'failed' is not STATE=DURATION"),
    (("--maintenance-interval", "-1"), "out of range"),
    (("--heartbeat-interval", "30", "--lease", "10"), "--heartbeat-interval (30) must be shorter than --lease"),
])
def test_bad_worker_options_are_usage_errors(clean_db: str, args: tuple[str, ...], message: str) -> None:
    result = run_cli("worker", "--app", APP, *args, url=clean_db)
    assert result.code == 2, result.stderr
    assert message in result.stderr
