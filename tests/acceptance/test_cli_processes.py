"""``finejobs worker --processes N``: one command, N worker processes under a supervisor (the real CLI)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import REPO_ROOT, Db, cli_env, run_cli, wait_for
from .test_cli import enqueue_direct

APP = "tests.acceptance.app_processes:queue"


@dataclass
class Supervised:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    application_name: str

    @property
    def log(self) -> str:
        return self.out.read_text()

    def describe(self) -> str:
        return f"supervisor exit={self.proc.poll()}\n--- stdout\n{self.log}--- stderr\n{self.err.read_text()}"

    def pids(self, tag: str) -> list[int]:
        """The pids the supervisor started for ``tag`` ('worker 1/2'), in order."""
        return [int(m.group(1)) for m in re.finditer(rf" INFO {re.escape(tag)} started: pid (\d+)$", self.log, re.M)]

    def children_started(self) -> int:
        """Children whose worker said 'started:' (a restarted child says it again)."""
        return len(re.findall(r"^\[worker \d/\d\] .* INFO worker \S+ started: ", self.log, re.M))


@pytest.fixture
def started_dir(tmp_path: Path) -> Path:
    """Where app_processes' handlers mark their start (a file per job id)."""
    return tmp_path / "started"


@pytest.fixture
def supervise(clean_db: str, tmp_path: Path, started_dir: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(*args: str) -> Supervised:
        name = f"finejobs-processes-{uuid.uuid4().hex[:8]}"
        out, err = tmp_path / f"sup{len(started)}.out", tmp_path / f"sup{len(started)}.err"
        started_dir.mkdir(exist_ok=True)
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", APP, "--poll-interval", "0.1",
                                     "--processes", "2", *args],
                                    cwd=REPO_ROOT, env=cli_env(clean_db, PGAPPNAME=name,
                                                               WHOAMI_STARTED_DIR=str(started_dir)),
                                    stdout=o, stderr=e)
        sup = Supervised(proc, out, err, name)
        started.append(sup)
        wait_for(lambda: sup.children_started() >= 2 or proc.poll() is not None, timeout=20,
                 what="both worker processes to start", context=sup.describe)
        assert proc.poll() is None, sup.describe()
        return sup

    yield start
    for sup in started:
        if sup.proc.poll() is None:
            sup.proc.send_signal(signal.SIGTERM)
            try:
                sup.proc.wait(20)
            except subprocess.TimeoutExpired:
                sup.proc.kill()
                sup.proc.wait(10)


def _running(db: Db) -> int:
    return sum(1 for state in db.states().values() if state == "running")


def _results(db: Db) -> list[str]:
    return [r for (r,) in db.conn.execute("SELECT return_value #>> '{}' FROM finejobs_jobs WHERE return_value IS NOT "
                                          "NULL").fetchall()]


def test_two_processes_share_the_jobs_tag_their_logs_and_stop_gracefully_on_sigterm(
        jobdb: Db, supervise: Callable[..., Supervised], started_dir: Path) -> None:
    sup = supervise("--concurrency", "2", "--worker-id", "proc-test")
    ids = enqueue_direct(jobdb.url, "whoami", [{"seconds": 1.5}] * 4)
    # 2 slots per process: the 4 jobs run at once only if both processes claim. Their handlers started (a job
    # claimed but not yet started when the stop comes is given back, not run: that is not what this test is about)
    wait_for(lambda: _running(jobdb) == 4 and len(list(started_dir.iterdir())) == 4, what="4 handlers running",
             context=sup.describe)
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(20) == 0, sup.describe()
    assert jobdb.states() == dict.fromkeys(ids, "succeeded")  # the running jobs finished in the grace period
    results = _results(jobdb)
    assert len({r.split()[0] for r in results}) == 2, results  # two pids
    assert sorted({r.split()[1] for r in results}) == ["proc-test:1", "proc-test:2"]  # a worker id each
    assert set(sup.pids("worker 1/2")).isdisjoint(sup.pids("worker 2/2"))
    lines = sup.log.splitlines()
    for tag in ("[worker 1/2] ", "[worker 2/2] "):
        tagged = [line for line in lines if line.startswith(tag)]
        assert any("INFO worker proc-test:" in line and " started: " in line for line in tagged), sup.describe()
        assert any("SIGTERM: stopping" in line for line in tagged)
        assert any(" stopped: " in line for line in tagged)
    untagged = [line for line in lines if not line.startswith("[worker ")]
    assert all(" INFO " in line or " WARNING " in line for line in untagged), untagged  # the supervisor's own
    assert "supervisor: all worker processes stopped" in lines[-1]
    wait_for(lambda: jobdb.backends(sup.application_name) == 0, timeout=5, what="connections to close")


def test_a_killed_child_is_restarted_and_every_job_succeeds(jobdb: Db, supervise: Callable[..., Supervised]) -> None:
    sup = supervise("--concurrency", "2", "--lease", "1", "--maintenance-interval", "0.2")
    ids = enqueue_direct(jobdb.url, "whoami", [{"seconds": 1.0}] * 4)
    wait_for(lambda: _running(jobdb) == 4, what="4 jobs running", context=sup.describe)
    [first] = sup.pids("worker 1/2")
    os.kill(first, signal.SIGKILL)  # a crash: its 2 running jobs are lost with it
    wait_for(lambda: len(sup.pids("worker 1/2")) == 2, what="worker 1/2 restarted", context=sup.describe)
    assert f"worker 1/2 (pid {first}) was killed by SIGKILL" in sup.log
    assert "restarting in" in sup.log
    second = sup.pids("worker 1/2")[1]
    assert second != first
    wait_for(lambda: sup.children_started() == 3, what="the new worker to start", context=sup.describe)
    # the lost jobs' leases run out (--lease 1), maintenance gives them back, and they run again
    wait_for(lambda: jobdb.states() == dict.fromkeys(ids, "succeeded"), timeout=20, what="every job to succeed",
             context=lambda: f"{jobdb.states()}\n{sup.describe()}")

    # the supervisor dies without a word: its children notice (their stdin closes) and stop by themselves
    sup.proc.kill()
    sup.proc.wait(5)
    wait_for(lambda: jobdb.backends(sup.application_name) == 0, timeout=15,
             what="the orphaned children to stop and close their connections")


def test_processes_with_a_metrics_port_too_high_for_every_process_is_a_usage_error() -> None:
    result = run_cli("worker", "--app", APP, "--processes", "3", "--metrics-port", "65534", url=None)
    assert result.code == 2
    assert "ports 65534 to 65536, over 65535" in result.stderr


def test_sigterm_while_the_children_are_starting_is_a_clean_stop(clean_db: str, tmp_path: Path) -> None:
    out = tmp_path / "early.out"
    with out.open("wb") as o:
        proc = subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", APP, "--processes", "2"],
                                cwd=REPO_ROOT, env=cli_env(clean_db), stdout=o, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "worker 2/2 started: pid" in out.read_text() or proc.poll() is not None,
                 what="the supervisor to start its children", context=out.read_text)
        proc.send_signal(signal.SIGTERM)  # the children may not handle signals yet: either way a clean stop
        assert proc.wait(20) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
