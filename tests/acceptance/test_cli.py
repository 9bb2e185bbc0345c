"""Acceptance tests: the real ``finejobs`` CLI in a subprocess, against a database of the test's own."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

import finejobs
from finejobs.cli import main

from .helpers import APP, REPO_ROOT, Db, Result, cli_env, run_cli, wait_for

SECRET_URL = "postgresql://postgres:s3cret@127.0.0.1:1/x"
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/x"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S")


def assert_one_line_error(result: Result, fragment: str, *, code: int = 1) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("finejobs: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def enqueue_direct(url: str, kind: str, payloads: list[dict[str, Any]], **options: Any) -> list[int]:
    """Enqueue with the library in this process (faster than one CLI call per job)."""
    queue = finejobs.Queue(url)

    @queue.job(kind)
    def _handler(payload: dict[str, Any]) -> None:  # never run here
        raise AssertionError("not run in the test process")

    try:
        return [job.id for job in queue.enqueue_many(kind, payloads, **options)]
    finally:
        queue.close()


# ---------------------------------------------------------------- help and migrate


@pytest.mark.parametrize("command", [
    [], ["migrate"], ["worker"], ["enqueue"], ["jobs"], ["jobs", "list"], ["jobs", "show"],
    ["jobs", "retry"], ["jobs", "cancel"], ["stats"],
])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: finejobs {' '.join(command)}".rstrip())
    if command and command != ["jobs"]:
        assert "--database-url" in out


def test_help_runs_as_a_module() -> None:
    result = run_cli("--help", url=None).ok()
    assert "migrate" in result.stdout and "worker" in result.stdout


def test_migrate_an_empty_database_then_up_to_date(empty_database_url: str) -> None:
    first = run_cli("migrate", url=empty_database_url).ok()
    assert "applied 0001_initial" in first.stdout
    again = run_cli("migrate", url=None, **{"FINEJOBS_DATABASE_URL": empty_database_url}).ok()
    assert "up to date" in again.stdout
    # the URL may also come from the group's option or the command's option
    assert "up to date" in run_cli("--database-url", empty_database_url, "migrate", url=None).ok().stdout
    assert "up to date" in run_cli("migrate", "--database-url", empty_database_url, url=None).ok().stdout


# ---------------------------------------------------------------- enqueue, list, show


def test_enqueue_then_list_and_show(jobdb: Db) -> None:
    url = jobdb.url
    greet = run_cli("enqueue", "greet", "--app", APP, "--payload", '{"name": "ada", "times": 2}',
                    "--shard", "district-3", "--priority", "5", url=url).ok()
    greet_id = int(greet.stdout.strip())

    report = run_cli("enqueue", "report.build", "--payload", '{"month": "2026-11"}',
                     "--run-at", "2099-01-01T08:00:00+01:00", "--expires-at", "2099-01-02T00:00:00Z",
                     "--unique-key", "report-2026-11", "--max-attempts", "5", "--json", url=url).ok().json()
    assert report["state"] == "scheduled"
    assert report["max_attempts"] == 5
    assert datetime.fromisoformat(report["run_at"]) == datetime(2099, 1, 1, 7, tzinfo=UTC)
    assert report["unique_key"] == "report-2026-11"

    same = run_cli("enqueue", "report.build", "--payload", '{"month": "2026-11"}',
                   "--unique-key", "report-2026-11", url=url).ok()
    assert int(same.stdout) == report["id"]

    from_stdin = run_cli("enqueue", "greet", "--app", APP, "--payload", "-", "--json", url=url,
                         stdin='{"name": "bob"}').ok().json()
    assert from_stdin["payload"] == {"name": "bob", "times": 1}  # the model's default applied

    listed = run_cli("jobs", "list", "--json", url=url).ok().json()
    assert [j["id"] for j in listed] == [from_stdin["id"], report["id"], greet_id]
    assert [j["id"] for j in run_cli("jobs", "list", "--state", "scheduled", "--json", url=url).json()] == [
        report["id"]]
    assert [j["id"] for j in run_cli("jobs", "list", "--shard", "district-3", "--json", url=url).json()] == [
        greet_id]
    assert len(run_cli("jobs", "list", "--kind", "greet", "--limit", "1", "--json", url=url).json()) == 1

    table = run_cli("jobs", "list", url=url).ok().stdout.splitlines()
    assert table[0].split() == ["ID", "KIND", "SHARD", "STATE", "ATTEMPT", "RUN_AT", "LAST_ERROR"]
    assert table[-1].split()[:5] == [str(greet_id), "greet", "district-3", "available", "0/3"]
    assert table[0].index("STATE") == table[-1].index("available")  # columns are aligned

    shown = run_cli("jobs", "show", str(greet_id), "--json", url=url).ok().json()
    assert shown["payload"] == {"name": "ada", "times": 2}
    assert (shown["kind"], shown["shard"], shown["state"], shown["priority"]) == (
        "greet", "district-3", "available", 5)
    assert set(shown) >= {"id", "run_at", "expires_at", "attempt", "max_attempts", "unique_key",
                          "lease_owner", "errors", "created_at", "started_at", "finished_at"}

    human = run_cli("jobs", "show", str(report["id"]), url=url).ok().stdout
    assert "unique_key:" in human and "report-2026-11" in human
    assert '"month": "2026-11"' in human
    assert "errors: none" in human


# ---------------------------------------------------------------- the worker


def test_worker_processes_jobs_and_stops_cleanly_on_sigterm(jobdb: Db, start_worker: Any) -> None:
    worker = start_worker("--concurrency", "4")
    first = int(run_cli("enqueue", "greet", "--app", APP, "--payload", '{"name": "cli"}', url=jobdb.url)
                .ok().stdout)
    ids = [first, *enqueue_direct(jobdb.url, "greet", [{"name": f"n{i}"} for i in range(9)], shard="s1"),
           *enqueue_direct(jobdb.url, "greet", [{"name": f"m{i}"} for i in range(10)], shard="s2")]

    wait_for(lambda: set(jobdb.states().values()) == {"succeeded"} and len(jobdb.states()) == len(ids),
             what="every job to succeed", context=lambda: f"{jobdb.states()}\n{worker.describe()}")
    assert jobdb.backends(worker.application_name) > 0  # the worker's connections are seen (PGAPPNAME)
    assert worker.terminate() == 0
    assert worker.stderr == ""
    outcome_lines = [line for line in worker.log.splitlines() if " succeeded in " in line]
    assert len(outcome_lines) == len(ids)
    assert all(LOG_LINE.match(line) for line in worker.log.splitlines())
    assert "stopped:" in worker.log.splitlines()[-1]
    # nothing left running: no job held, no connection left open by the worker
    assert jobdb.states() == dict.fromkeys(ids, "succeeded")
    wait_for(lambda: jobdb.backends(worker.application_name) == 0, timeout=5, what="worker connections to close")


def test_worker_serves_only_its_shards(jobdb: Db, start_worker: Any) -> None:
    mine = enqueue_direct(jobdb.url, "greet", [{"name": "a"}, {"name": "b"}], shard="district-3")
    other = enqueue_direct(jobdb.url, "greet", [{"name": "c"}], shard="district-4")
    worker = start_worker("--shard", "district-3", "--shard", "district-9")
    wait_for(lambda: all(jobdb.state(i) == "succeeded" for i in mine), what="district-3 jobs to succeed",
             context=worker.describe)
    assert worker.terminate() == 0
    assert jobdb.state(other[0]) == "available"


def test_running_job_finishes_within_the_grace_period(jobdb: Db, start_worker: Any) -> None:
    worker = start_worker("--shutdown-grace", "10")
    job_id = int(run_cli("enqueue", "nap", "--app", APP, "--payload", '{"seconds": 1.0}', url=jobdb.url)
                 .ok().stdout)
    wait_for(lambda: jobdb.state(job_id) == "running", what="the nap job to start", context=worker.describe)
    started = time.monotonic()
    assert worker.terminate() == 0
    assert time.monotonic() - started < 8
    assert jobdb.state(job_id) == "succeeded"
    assert "stopping: waiting up to" in worker.log
    assert worker.stderr == ""


def test_job_still_running_after_the_grace_period_is_given_back(jobdb: Db, start_worker: Any) -> None:
    worker = start_worker("--shutdown-grace", "0.2")
    job_id = int(run_cli("enqueue", "nap", "--app", APP, "--payload", '{"seconds": 20}', url=jobdb.url)
                 .ok().stdout)
    wait_for(lambda: jobdb.state(job_id) == "running", what="the nap job to start", context=worker.describe)
    started = time.monotonic()
    assert worker.terminate() == 0  # does not wait for the 20 s handler
    assert time.monotonic() - started < 5
    shown = run_cli("jobs", "show", str(job_id), "--json", url=jobdb.url).ok().json()
    assert shown["state"] == "available"
    assert shown["errors"][-1]["error"] == "WorkerShutdown"


def test_failed_job_shows_its_traceback_and_can_be_retried(jobdb: Db, start_worker: Any) -> None:
    job_id = int(run_cli("enqueue", "explode", "--app", APP, "--payload", '{"why": "on purpose"}',
                         url=jobdb.url).ok().stdout)
    worker = start_worker()
    wait_for(lambda: jobdb.state(job_id) == "failed", what="the explode job to fail", context=worker.describe)
    assert worker.terminate() == 0
    assert f"job {job_id} explode" in worker.log and "RuntimeError: boom: on purpose" in worker.log

    listed = run_cli("jobs", "list", "--state", "failed", url=jobdb.url).ok().stdout.splitlines()
    assert listed[1].split()[-1] == "RuntimeError"
    human = run_cli("jobs", "show", str(job_id), url=jobdb.url).ok().stdout
    assert "Traceback (most recent call last)" in human
    assert "RuntimeError: boom: on purpose" in human

    retried = run_cli("jobs", "retry", str(job_id), url=jobdb.url).ok()
    assert "available" in retried.stdout
    assert run_cli("jobs", "show", str(job_id), "--json", url=jobdb.url).json()["max_attempts"] == 2


# ---------------------------------------------------------------- operating jobs


def test_cancel_then_retry(jobdb: Db) -> None:
    url = jobdb.url
    job_id = int(run_cli("enqueue", "report.build", "--payload", "{}", url=url).ok().stdout)

    assert "cancelled" in run_cli("jobs", "cancel", str(job_id), "--reason", "not needed", url=url).ok().stdout
    shown = run_cli("jobs", "show", str(job_id), "--json", url=url).ok().json()
    assert shown["state"] == "cancelled"
    assert shown["errors"][-1]["message"] == "not needed"
    assert_one_line_error(run_cli("jobs", "cancel", str(job_id), url=url), "cannot cancel")

    assert "available" in run_cli("jobs", "retry", str(job_id), url=url).ok().stdout
    assert jobdb.state(job_id) == "available"
    assert_one_line_error(run_cli("jobs", "retry", str(job_id), url=url), "cannot retry")


def test_stats(jobdb: Db) -> None:
    url = jobdb.url
    enqueue_direct(url, "greet", [{"name": "a"}, {"name": "b"}])
    enqueue_direct(url, "report.build", [{}], shard="s2")
    run_cli("enqueue", "report.build", "--payload", "{}", "--shard", "s2",
            "--run-at", "2099-01-01T00:00:00Z", url=url).ok()
    cancel_id = int(run_cli("enqueue", "greet", "--payload", "{}", url=url).ok().stdout)
    run_cli("jobs", "cancel", str(cancel_id), url=url).ok()

    stats = run_cli("stats", "--json", url=url).ok().json()
    assert stats["total"] == 5
    assert stats["by_state"] == {"scheduled": 1, "available": 3, "running": 0, "succeeded": 0, "failed": 0,
                                 "expired": 0, "cancelled": 1}
    assert stats["by_kind"] == {"greet": {"available": 2, "cancelled": 1},
                                "report.build": {"available": 1, "scheduled": 1}}
    assert stats["by_shard"] == {"default": {"available": 2, "cancelled": 1},
                                 "s2": {"available": 1, "scheduled": 1}}

    text = run_cli("stats", url=url).ok().stdout
    assert "total: 5" in text
    assert re.search(r"^report\.build\s+1\s+1\s+0\s+2$", text, re.MULTILINE), text


# ---------------------------------------------------------------- errors: one line, no traceback

# (id, args, url, fragment of the message, exit code); url "db" is the session's migrated database.
ERROR_CASES: list[tuple[str, list[str], str | None, str, int]] = [
    ("bad-url", ["jobs", "list"], "not-a-url", "not a PostgreSQL URL", 1),
    ("unreachable", ["stats"], UNREACHABLE_URL, "database unavailable", 1),
    ("bad-port", ["stats"], "postgresql://postgres:s3cret@127.0.0.1:notaport/x", "invalid database URL", 1),
    ("no-url", ["stats"], None, "no database URL", 1),
    ("app-module", ["worker", "--app", "no_such_module.jobs:queue"], "db", "no module named 'no_such_module.jobs'", 1),
    ("app-attr", ["worker", "--app", "tests.acceptance.app_jobs:nope"], "db", "has no attribute 'nope'", 1),
    ("app-type", ["worker", "--app", "tests.acceptance.app_jobs:Greeting"], "db", "not a finejobs.Queue", 1),
    ("app-enqueue", ["enqueue", "greet", "--app", "no_such_module", "--payload", "{}"], "db", "bad --app", 1),
    ("payload-type", ["enqueue", "greet", "--app", APP, "--payload", '{"name": "ada", "times": "many"}'], "db",
     "times", 1),
    ("payload-extra", ["enqueue", "greet", "--app", APP, "--payload", '{"nmae": "ada"}'], "db", "nmae", 1),
    ("unknown-kind", ["enqueue", "nope", "--app", APP, "--payload", "{}"], "db", "unknown job kind 'nope'", 1),
    ("payload-list", ["enqueue", "report.build", "--payload", "[1, 2]"], "db", "JSON object", 1),
    ("payload-json", ["enqueue", "report.build", "--payload", "{oops"], "db", "not valid JSON", 2),
    ("naive-run-at", ["enqueue", "greet", "--payload", "{}", "--run-at", "2026-11-22T08:00:00"], "db",
     "no timezone", 2),
    ("bad-shard", ["enqueue", "greet", "--payload", "{}", "--shard", "Bad Shard"], "db", "invalid shard name", 2),
    ("show-unknown", ["jobs", "show", "999999"], "db", "no job with id 999999", 1),
    ("retry-unknown", ["jobs", "retry", "999999"], "db", "no job with id 999999", 1),
    ("cancel-unknown", ["jobs", "cancel", "999999"], "db", "no job with id 999999", 1),
    ("show-not-int", ["jobs", "show", "abc"], "db", "'abc' is not a valid integer", 2),
    ("no-command", ["jobs", "frobnicate"], "db", "frobnicate", 2),
    ("no-option", ["stats", "--colour"], "db", "--colour", 2),
    # a password in the URL never shows, whether the URL comes from the environment or an option
    *[(f"secret-{'-'.join(args[:2])}", args, SECRET_URL, "postgres:***@127.0.0.1:1/x", 1) for args in (
        ["migrate"], ["stats"], ["jobs", "list"], ["jobs", "show", "1"], ["jobs", "cancel", "1"],
        ["enqueue", "x", "--payload", "{}"], ["enqueue", "greet", "--app", APP, "--payload", '{"name": "a"}'],
        ["worker", "--app", APP])],
    ("secret-group-option", ["--database-url", SECRET_URL, "stats"], None, "postgres:***@127.0.0.1:1/x", 1),
    ("secret-command-option", ["jobs", "list", "--database-url", SECRET_URL], None, "postgres:***@", 1),
    ("secret-worker-option", ["worker", "--app", APP, "--database-url", SECRET_URL], "db", "postgres:***@", 1),
]


@pytest.fixture(scope="module")
def error_results(database_url: str) -> dict[str, Result]:
    """Every error case, run concurrently (each is an independent CLI process that changes nothing)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case_id: pool.submit(run_cli, *args, url=database_url if url == "db" else url)
                   for case_id, args, url, _, _ in ERROR_CASES}
        return {case_id: future.result() for case_id, future in futures.items()}


@pytest.mark.parametrize(("case_id", "fragment", "code"), [(c[0], c[3], c[4]) for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_errors_are_one_line_without_traceback_or_password(
    case_id: str, fragment: str, code: int, error_results: dict[str, Result]
) -> None:
    result = error_results[case_id]
    assert_one_line_error(result, fragment, code=code)
    assert "s3cret" not in result.stdout + result.stderr


def test_unmigrated_database(empty_database_url: str) -> None:
    cases = (["jobs", "list"], ["stats"], ["enqueue", "x", "--payload", "{}"],
             ["enqueue", "greet", "--app", APP, "--payload", '{"name": "a"}'], ["worker", "--app", APP])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda args: run_cli(*args, url=empty_database_url), cases))
    for result in results:
        assert_one_line_error(result, "run `finejobs migrate`")


def test_second_signal_exits_at_once_and_the_lease_brings_the_job_back(jobdb: Db, start_worker: Any) -> None:
    worker = start_worker("--shutdown-grace", "60")
    job_id = int(run_cli("enqueue", "nap", "--app", APP, "--payload", '{"seconds": 30}', url=jobdb.url)
                 .ok().stdout)
    wait_for(lambda: jobdb.state(job_id) == "running", what="the nap job to start", context=worker.describe)
    worker.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "send it again to exit at once" in worker.log, what="the first signal", context=worker.describe)
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(10)
    assert code != 0, "a forced exit is not a clean stop"
    assert time.monotonic() - started < 5, "the second signal does not wait for the 30 s handler"
    # Nothing is lost: the job is still held by its (now dead) worker's lease, for the rescuer to return.
    shown = run_cli("jobs", "show", str(job_id), "--json", url=jobdb.url).ok().json()
    assert shown["state"] == "running" and shown["lease_expires_at"] is not None


def test_a_handler_that_kills_its_worker_fails_only_its_own_job(jobdb: Db) -> None:
    doomed = int(run_cli("enqueue", "die", "--app", APP, url=jobdb.url).ok().stdout)
    greetings = [int(run_cli("enqueue", "greet", "--app", APP, "--payload", f'{{"name": "p{i}"}}',
                             url=jobdb.url).ok().stdout) for i in range(5)]
    exits = []
    deadline = time.monotonic() + 60
    while jobdb.state(doomed) != "failed" and time.monotonic() < deadline:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finejobs", "worker", "--app", APP, "--poll-interval", "0.1", "--lease", "1",
             "--concurrency", "1"],
            cwd=REPO_ROOT, env=cli_env(jobdb.url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        def ended(proc: subprocess.Popen[bytes] = proc) -> bool:
            return proc.poll() is not None or jobdb.state(doomed) == "failed"

        wait_for(ended, timeout=30, what="the worker to die, or the doomed job to end")
        if proc.poll() is None:  # the doomed job ended meanwhile: nothing killed this worker
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        else:
            exits.append(proc.returncode)
    assert jobdb.state(doomed) == "failed", exits
    assert exits[:2] == [3, 3], "each attempt of the doomed job took its worker down"
    shown = run_cli("jobs", "show", str(doomed), "--json", url=jobdb.url).ok().json()
    assert [e["error"] for e in shown["errors"]] == ["LeaseExpired", "LeaseExpired"]
    assert shown["attempt"] == shown["max_attempts"] == 2
    # The other jobs go on: a worker (the last one may have been stopped just as the doomed job ended,
    # with greetings still waiting) runs every one of them.
    with subprocess.Popen(
        [sys.executable, "-m", "finejobs", "worker", "--app", APP, "--poll-interval", "0.1"],
        cwd=REPO_ROOT, env=cli_env(jobdb.url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as proc:
        wait_for(lambda: {jobdb.state(g) for g in greetings} == {"succeeded"}, what="the greetings to run")
        proc.send_signal(signal.SIGTERM)  # maybe before it installed its handlers: any exit will do
        proc.wait(15)


def test_bench_passes_its_arguments_through_from_a_checkout() -> None:
    shown = run_cli("bench", "--help", url=None).ok()
    assert shown.stdout.startswith("Usage: python -m bench [OPTIONS]")
    assert "--quick" in shown.stdout


def test_bench_outside_a_checkout_is_a_clear_error(tmp_path: Any) -> None:
    proc = subprocess.run([sys.executable, "-m", "finejobs", "bench"], cwd=tmp_path, env=cli_env(None),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.startswith("finejobs: error: `finejobs bench` runs the benchmarks of a finejobs checkout")
