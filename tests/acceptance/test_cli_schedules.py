"""Acceptance: ``finejobs schedules ...`` in a subprocess, and a real worker firing schedules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from finejobs.cli import main

from .helpers import REPO_ROOT, Db, WorkerProcess, cli_env, run_cli, wait_for

SCHEDULE_APP = "tests.acceptance.app_schedules:queue"


@pytest.fixture(autouse=True)
def no_schedules(jobdb: Db) -> Iterator[None]:
    jobdb.conn.execute("TRUNCATE finejobs_schedules RESTART IDENTITY")
    yield
    jobdb.conn.execute("TRUNCATE finejobs_schedules RESTART IDENTITY")


def ok(*args: str, url: str) -> str:
    return run_cli("schedules", *args, url=url).ok().stdout


@pytest.mark.parametrize("command", [
    ["schedules"], ["schedules", "list"], ["schedules", "show"], ["schedules", "add"], ["schedules", "update"],
    ["schedules", "delete"], ["schedules", "pause"], ["schedules", "resume"], ["schedules", "pause-all"],
    ["schedules", "resume-all"], ["schedules", "run-now"], ["schedules", "skip-next"], ["schedules", "sync"],
])
def test_every_schedules_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: finejobs {' '.join(command)}")
    if len(command) > 1:
        assert "--database-url" in out


RULES = [
    (["--cron", "0 6 * * MON", "--tz", "Africa/Dar_es_Salaam"], "At 06:00 on Monday (Africa/Dar_es_Salaam)"),
    (["--every", "2w", "--start", "2026-11-23T09:00:00+01:00", "--count", "10", "--tz", "Europe/Madrid"],
     "every 2 weeks from 2026-11-23 09:00:00 (Europe/Madrid), 10 times"),
    (["--rrule", "FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6;BYMINUTE=0", "--tz", "Europe/Madrid"],
     "every month on the last Monday at 06:00 (Europe/Madrid)"),
    (["--rrule", "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=21;BYHOUR=9;BYMINUTE=0", "--until", "2030-01-21T23:59:59Z"],
     "every year on 21 January at 09:00 (UTC), until 2030-01-21 23:59"),
    (["--daily-at", "00:00", "--tz", "Europe/Madrid"], "daily at 00:00 (Europe/Madrid)"),
    (["--every", "5s", "--count", "10", "--start", "2030-01-01T00:00:00Z"],
     "every 5 seconds from 2030-01-01 00:00:00 (UTC), 10 times"),
    (["--once", "2030-01-01T09:00:00Z"], "once at 2030-01-01 09:00:00 UTC"),
    (["--adaptive", "success=5m,idle=30m,error=1m,timeout=10m"], "adaptive: next run 5 minutes after success"),
    (["--cron", "0 0 9 15W * *"], "cron '0 0 9 15W * *'"),
]


def test_add_each_kind_of_rule_then_list(clean_db: str) -> None:
    for i, (options, words) in enumerate(RULES):
        out = ok("add", f"s{i}", "--kind", "greet", "--payload", '{"name": "Ada"}', *options, url=clean_db)
        assert out.startswith(f"schedule s{i}: {words}"), out
    listed = {s["name"]: s for s in run_cli("schedules", "list", "--json", url=clean_db).ok().json()}
    assert sorted(listed) == sorted(f"s{i}" for i in range(len(RULES)))
    for i, (_, words) in enumerate(RULES):
        assert listed[f"s{i}"]["rule_text"].startswith(words)
        assert listed[f"s{i}"]["payload"] == {"name": "Ada"}


def test_operations_end_to_end(clean_db: str, jobdb: Db) -> None:
    ok("add", "renewals", "--kind", "greet", "--cron", "0 6 * * MON", "--payload", '{"name": "x"}',
       "--description", "weekly policy renewal", url=clean_db)
    ok("add", "tidy", "--kind", "nap", "--every", "1h", "--payload", '{"seconds": 0}', url=clean_db)
    table = ok("list", "--sort", "name", url=clean_db).splitlines()
    assert table[0].split()[:3] == ["NAME", "KIND", "RULE"] and [line.split()[0] for line in table[1:]] == [
        "renewals", "tidy"]
    assert [s["name"] for s in run_cli("schedules", "list", "--search", "POLICY", "--json", url=clean_db).ok().json()
            ] == ["renewals"]
    job_id = int(ok("run-now", "renewals", url=clean_db))
    assert jobdb.state(job_id) == "available"
    refused = run_cli("schedules", "run-now", "renewals", url=clean_db)
    assert refused.code == 1 and "not finished" in refused.stderr
    assert int(ok("run-now", "renewals", "--force", url=clean_db)) > job_id
    assert "recent runs:" in ok("show", "renewals", url=clean_db)
    before = run_cli("schedules", "show", "renewals", "--json", url=clean_db).ok().json()
    ok("skip-next", "renewals", url=clean_db)
    after = run_cli("schedules", "show", "renewals", "--json", url=clean_db).ok().json()
    assert after["next_fire_at"] == before["next_fires"][1] and after["skipped"] == 1
    assert "is paused" in ok("pause", "tidy", url=clean_db)
    assert "is active" in ok("resume", "tidy", url=clean_db)
    assert ok("pause-all", url=clean_db).strip() == "paused 2 schedule(s): renewals, tidy"
    assert ok("resume-all", "--kind", "nap", url=clean_db).strip() == "resumed 1 schedule(s): tidy"
    assert "every 2 hours" in ok("update", "tidy", "--every", "2h", "--description", "slower", url=clean_db)
    ok("delete", "tidy", url=clean_db)
    missing = run_cli("schedules", "show", "tidy", url=clean_db)
    assert missing.code == 1 and missing.stderr.strip() == "finejobs: error: no schedule named 'tidy'"


@pytest.mark.parametrize(("args", "fragment"), [
    (["add", "x", "--kind", "k"], "give a rule"),
    (["add", "x", "--kind", "k", "--cron", "nope"], "cron expression 'nope'"),
    (["add", "x", "--kind", "k", "--cron", "* * * * *", "--every", "5m"], "give one rule"),
    (["add", "x", "--kind", "k", "--every", "soon"], "not a duration"),
    (["add", "x", "--kind", "k", "--daily-at", "25:00"], "not a time of day"),
    (["add", "x", "--kind", "k", "--cron", "* * * * *", "--tz", "Mars/Olympus"], "unknown timezone"),
    (["add", "x", "--kind", "k", "--cron", "* * * * *", "--payload", "[1]"], "JSON object"),
    (["update", "x"], "nothing to update"),
])
def test_bad_input_is_one_line_on_stderr(clean_db: str, args: list[str], fragment: str) -> None:
    result = run_cli("schedules", *args, url=clean_db)
    assert result.code in (1, 2), result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finejobs: error: ") and fragment in lines[0], result.stderr


def test_add_with_app_validates_the_payload(clean_db: str) -> None:
    bad = run_cli("schedules", "add", "r", "--kind", "renew.region", "--every", "1h", "--payload", '{"x": 1}',
                  "--app", SCHEDULE_APP, url=clean_db)
    assert bad.code == 1 and "invalid payload" in bad.stderr
    ok("add", "r", "--kind", "renew.region", "--every", "1h", "--payload", '{"region": "south"}',
       "--app", SCHEDULE_APP, url=clean_db)


def test_sync_writes_the_schedules_declared_in_code(clean_db: str) -> None:
    assert "wrote 2 schedule(s)" in ok("sync", "--app", SCHEDULE_APP, url=clean_db)
    assert "wrote 0 schedule(s)" in ok("sync", "--app", SCHEDULE_APP, url=clean_db)
    listed = {s["name"]: s for s in run_cli("schedules", "list", "--json", url=clean_db).ok().json()}
    assert set(listed) == {"renew.policies", "weekly-renewals"}
    assert listed["weekly-renewals"]["source"] == "code"


def test_a_worker_upserts_declared_schedules_and_fires_them(clean_db: str, jobdb: Db, tmp_path: Path) -> None:
    log_path, err_path = tmp_path / "worker.out", tmp_path / "worker.err"
    with log_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", SCHEDULE_APP,
                                 "--poll-interval", "0.1"], cwd=REPO_ROOT, env=cli_env(clean_db), stdout=out,
                                stderr=err)
    worker = WorkerProcess(proc, log_path, err_path, "schedules-acceptance")
    try:
        _wait_for_runs(jobdb, worker)
        assert worker.terminate() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    shown = run_cli("schedules", "show", "renew.policies", "--json", url=clean_db).ok().json()
    assert shown["runs"] >= 2 and shown["status"] == "active" and shown["recent_runs"][0]["fire_at"]
    fire_times = [r["fire_at"] for r in shown["recent_runs"]]
    assert len(fire_times) == len(set(fire_times)), "one job per tick"
    assert {s["name"] for s in run_cli("schedules", "list", "--json", url=clean_db).ok().json()} == {
        "renew.policies", "weekly-renewals"}


def _wait_for_runs(jobdb: Db, worker: WorkerProcess) -> None:
    def succeeded() -> int:
        row = jobdb.conn.execute("SELECT count(*) FROM finejobs_jobs j JOIN finejobs_schedules s "
                                 "ON s.id = j.schedule_id WHERE s.name = 'renew.policies' "
                                 "AND j.state = 'succeeded'").fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: succeeded() >= 2, timeout=20, what="two scheduled runs", context=worker.describe)
