"""Acceptance: ``finejobs groups list | show | seal | cancel`` in a subprocess (and, for the refusals, in
process): tables with progress bars, JSON, the problem members with passwords masked, the confirmation
before a cancel, the audit entry, exit codes and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import finejobs
from finejobs import Admin
from finejobs.cli import main

from .app_groups import declare
from .helpers import Db, run_cli

PASSWORD = "hunter2-db-pw"


@pytest.fixture
def seeded(clean_db: str, jobdb: Db) -> Iterator[finejobs.Queue]:
    """"batch/7": sealed, 10 members, 6 done (3 failed), 4 waiting; "open one" and "open two": open."""
    queue = declare(finejobs.Queue(clean_db))
    with queue.group("batch/7", on_complete="report", on_failure="report") as group:
        group.enqueue_many("item", [{"n": n, "fail": n in (0, 2, 4), "pw": PASSWORD} for n in range(10)])
    worker = queue.worker(listen=False, concurrency=6)
    assert isinstance(worker, finejobs.Worker)
    worker.work_once()
    queue.group("open one").enqueue("item", {"n": 99})
    queue.group("open two").enqueue("item", {"n": 98})
    yield queue
    queue.close()


@pytest.mark.parametrize("command", [["groups"], ["groups", "list"], ["groups", "show"], ["groups", "seal"],
                                     ["groups", "cancel"]])
def test_every_groups_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: finejobs {' '.join(command)}")
    if len(command) > 1:
        assert "--database-url" in out


def test_list_show_and_cancel_through_the_real_cli(seeded: finejobs.Queue, clean_db: str) -> None:
    listing = run_cli("groups", "list", url=clean_db).ok().stdout.splitlines()
    assert listing[0].split() == ["NAME", "STATE", "PROGRESS", "DONE", "SUCCEEDED", "FAILED", "CANCELLED", "RATE",
                                  "ETA", "CREATED"]
    rows = {line.split()[0]: line for line in listing[1:]}
    assert "[############........]  60%  6/10" in rows["batch/7"] and " sealed " in rows["batch/7"]
    assert "[....................]   0%  0/1" in rows["open"], "'open one' and 'open two'"

    shown = run_cli("groups", "show", "batch/7", url=clean_db).ok().stdout
    assert "progress:     [############........]  60%  6 of 10 done" in shown
    assert "waiting:      4" in shown and "failed:       3" in shown
    assert "callbacks:    on complete, on failure" in shown
    assert "problems (newest 3):" in shown and shown.count(" failed  RuntimeError: item ") == 3
    assert PASSWORD not in shown and "postgresql://svc:***@db.example/x" in shown

    refused = run_cli("groups", "cancel", "open one", url=clean_db, stdin="n\n")
    assert refused.code == 1 and "Cancel group 'open one'" in refused.stderr
    assert refused.stderr.rstrip().endswith("finejobs: error: aborted")
    assert Admin(seeded).groups.get("open one").progress.state == "open"

    done = run_cli("groups", "cancel", "open one", "--reason", "wrong tariff", "--yes", url=clean_db).ok()
    assert done.stdout.strip() == "group open one: cancelled 1 waiting member(s); it is cancelled (1 of 1 done)"
    assert done.stderr == "", "no question asked"
    [entry] = [e for e in Admin(seeded).audit() if e.action == "cancel group"]
    assert entry.actor.startswith("cli:") and (entry.target["group"], entry.count, entry.detail) == (
        "open one", 1, "wrong tariff")


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, "groups", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_filters_seal_and_refusals(seeded: finejobs.Queue, clean_db: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, clean_db, "list", "--json")
    assert code == 0 and [g["name"] for g in json.loads(out)] == ["open two", "open one", "batch/7"]
    code, out, _ = run(capsys, clean_db, "list", "--state", "sealed", "--limit", "5")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["batch/7"]
    assert run(capsys, clean_db, "list", "--state", "failed") == (0, "no groups\n", "")
    code, out, _ = run(capsys, clean_db, "show", "batch/7", "--json", "--problems", "2")
    data = json.loads(out)
    assert (data["total"], data["done"], data["waiting"], data["state"]) == (10, 6, 4, "sealed")
    assert len(data["problems"]) == 2 and all("***" in p["error"] and PASSWORD not in p["error"]
                                              for p in data["problems"])

    assert run(capsys, clean_db, "seal", "open two") == (0, "group open two is sealed (0 of 1 done)\n", "")
    code, out, _ = run(capsys, clean_db, "cancel", "batch/7", "--yes", "--json")
    assert code == 0 and json.loads(out)["cancelled_now"] == 4 and json.loads(out)["state"] == "cancelled"

    assert run(capsys, clean_db, "cancel", "batch/7", "--yes") == (
        1, "", "finejobs: error: group 'batch/7' has already finished (cancelled): nothing to cancel\n")
    assert run(capsys, clean_db, "show", "nope") == (1, "", "finejobs: error: no group named 'nope'\n")
    code, _, err = run(capsys, clean_db, "list", "--state", "bogus")
    assert code == 2 and "Invalid value for '--state'" in err
    code, _, err = run(capsys, clean_db, "show", "x" * 201)
    assert code == 2 and "group name" in err
