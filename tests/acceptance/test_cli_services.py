"""``finejobs services check|run|list`` through the real CLI, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_stub import Stub, serve

from .helpers import REPO_ROOT, WorkerProcess, cli_env, run_cli, wait_for


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    with serve() as server:
        yield server


def services_file(tmp_path: Path, stub: Stub) -> Path:
    path = tmp_path / "services.json"
    path.write_text(json.dumps([
        {"name": "hello", "description": "says hello", "endpoint": f"{stub.url}/success?token=s3cr3t",
         "parameters": {"who": "cli"}, "timeout": 5, "allow_concurrency": False,
         "execution_plan": {"period": "interval", "timezone": "Europe/Madrid", "time": "00:00",
                            "intervals": {"on_success": 3600, "on_idle": 600, "on_error": 60, "on_timeout": 60}}},
        {"name": "broken", "endpoint": f"{stub.url}/error", "timeout": 5,
         "execution_plan": {"period": "interval", "intervals": {"on_success": 60, "on_error": 7200}}},
        {"name": "morning", "endpoint": f"{stub.url}/success", "timeout": 5,
         "execution_plan": {"period": "daily", "timezone": "Europe/Madrid", "time": "09:00"}},
    ], indent=2))
    return path


def test_check_prints_the_plans_and_refuses_a_bad_file(tmp_path: Path, stub: Stub) -> None:
    good = run_cli("services", "check", str(services_file(tmp_path, stub)), url=None).ok()
    assert "hello" in good.stdout and "1 hour after success" in good.stdout
    assert "daily at 09:00 (Europe/Madrid)" in good.stdout and "3 services: ok" in good.stdout
    assert "token=***" in good.stdout and "s3cr3t" not in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[services]]\nname = "x"\nendpoint = "ftp://x"\n[services.execution_plan]\nperiod = "hourly"\n')
    refused = run_cli("services", "check", str(bad), url=None)
    assert refused.code == 1 and refused.stdout == ""
    assert "nothing scheduled (2 problems)" in refused.stderr
    assert "services[0].endpoint" in refused.stderr and "services[0].execution_plan.period" in refused.stderr
    syntax = tmp_path / "syntax.json"
    syntax.write_text('[\n{"name": "x",\n "timeout": }\n]')
    assert "JSON syntax error at line 3 column 13" in run_cli("services", "check", str(syntax), url=None).stderr


def test_a_daemon_runs_the_services_and_list_shows_their_outcomes(clean_db: str, tmp_path: Path,
                                                                  stub: Stub) -> None:
    path = services_file(tmp_path, stub)
    log_path, err_path = tmp_path / "daemon.out", tmp_path / "daemon.err"
    with log_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "finejobs", "services", "run", str(path),
                                 "--poll-interval", "0.1", "--concurrency", "2"],
                                cwd=REPO_ROOT, env=cli_env(clean_db), stdout=out, stderr=err)
    daemon = WorkerProcess(proc, log_path, err_path, "services")
    try:
        wait_for(lambda: "service=hello code=success" in daemon.log and "service=broken code=error" in daemon.log,
                 timeout=20, what="both calls", context=daemon.describe)
    finally:
        assert daemon.terminate() == 0, daemon.describe()
    assert "message=synced 3 devices" in daemon.log and "duration=" in daemon.log
    assert "s3cr3t" not in daemon.log + daemon.stderr
    assert stub.of("/success")[-1].body == {"who": "cli"}
    listed = run_cli("services", "list", "--json", url=clean_db).ok().json()
    by_name = {s["name"]: s for s in listed}
    assert set(by_name) == {"hello", "broken", "morning"}
    assert (by_name["hello"]["last_outcome"], by_name["hello"]["message"]) == ("success", "synced 3 devices")
    assert by_name["broken"]["last_outcome"] == "error"
    assert "gateway down | error_details: [\"device 7: no answer\"" in by_name["broken"]["message"]
    assert by_name["morning"]["last_outcome"] is None and by_name["morning"]["next_run"]
    assert by_name["hello"]["endpoint"].endswith("/success?token=***")
    text = run_cli("services", "list", url=clean_db).ok().stdout
    assert "NEXT RUN" in text and "hello" in text and "synced 3 devices" in text
