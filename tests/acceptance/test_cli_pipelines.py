"""Acceptance: ``finejobs pipelines list | show | cancel`` in a subprocess (and, for JSON and the refusals, in
process): each run's state and the step it is at, each step's progress bar with its chunks and items, the
confirmation before a cancel, the audit entry, exit codes and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import finejobs
from finejobs.admin.pipelines import PipelineOps
from finejobs.cli import main
from finejobs.runtime.worker import Worker

from .app_pipelines import declare
from .helpers import Db, run_cli


@pytest.fixture
def runs(clean_db: str, jobdb: Db) -> Iterator[tuple[finejobs.Queue, int, int]]:
    """Run 1 of "export" over 23 ids: succeeded, 5 items skipped; run 2: running, nothing done yet."""
    queue = finejobs.Queue(clean_db)
    export = declare(queue)
    done = export.start({"n": 23})
    worker = queue.worker(listen=False, concurrency=4, run_scheduler=False, register=False)
    assert isinstance(worker, Worker)
    while worker.work_once():
        pass
    running = export.start({"n": 4})
    yield queue, done.id, running.id
    queue.close()


@pytest.mark.parametrize("command", [["pipelines"], ["pipelines", "list"], ["pipelines", "show"],
                                     ["pipelines", "cancel"]])
def test_every_pipelines_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: finejobs {' '.join(command)}")
    if len(command) > 1:
        assert "--database-url" in out


def test_list_show_and_cancel_through_the_real_cli(runs: tuple[finejobs.Queue, int, int], clean_db: str) -> None:
    queue, done, running = runs
    listing = run_cli("pipelines", "list", url=clean_db).ok().stdout.splitlines()
    assert listing[0].split() == ["ID", "PIPELINE", "STATE", "STEPS", "STEP", "PROGRESS", "FAILED", "SKIPPED",
                                  "CREATED", "FINISHED"]
    assert listing[1].split()[:6] == [str(running), "export", "running", "0/4", "fetch", "[....................]"]
    assert listing[2].split()[:5] == [str(done), "export", "succeeded", "4/4", "reduce"]
    assert "[####################] 100%  0       5" in listing[2]

    shown = run_cli("pipelines", "show", str(done), url=clean_db).ok().stdout
    assert 'result:      {"written": 18}' in shown and 'params:      {"n": 23}' in shown
    steps = {line.split()[1]: line for line in shown.splitlines() if line.startswith("  ") and "." in line[:6]}
    assert list(steps) == ["fetch", "expand", "write", "reduce"]
    assert "[####################] 100%  4/5     18/23  0 (0)            5 (1)" in steps["expand"]
    assert "(streaming)" in steps["write"] and "(reduction)" in steps["reduce"]

    cancelled = run_cli("pipelines", "cancel", str(running), "--reason", "wrong ids", "--yes", url=clean_db).ok()
    assert cancelled.stdout.strip() == f"pipeline run {running} (export) is cancelled"
    run = PipelineOps(queue).get(running)
    assert (run.state, run.error) == ("cancelled", "wrong ids")
    [entry] = [e for e in finejobs.Admin(queue).audit() if e.action == "pipeline cancel"]
    assert entry.actor.startswith("cli:") and entry.target["pipeline"] == running


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, "pipelines", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_pages_and_refusals(runs: tuple[finejobs.Queue, int, int], clean_db: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, done, running = runs
    code, out, err = run(capsys, clean_db, "list", "--json", "--limit", "1")
    page = json.loads(out)
    assert code == 0 and [r["id"] for r in page["pipelines"]] == [running] and page["next_before"] == running
    code, out, err = run(capsys, clean_db, "list", "--before", str(running))
    assert code == 0 and out.splitlines()[1].split()[0] == str(done) and err == ""
    assert run(capsys, clean_db, "list", "--state", "failed") == (0, "no pipeline runs\n", "")
    code, out, _ = run(capsys, clean_db, "show", str(done), "--json")
    data = json.loads(out)
    assert (data["state"], data["result"]) == ("succeeded", {"written": 18})
    assert [(s["name"], s["items_skipped"]) for s in data["steps"]] == [
        ("fetch", 0), ("expand", 5), ("write", 0), ("reduce", 0)]

    assert run(capsys, clean_db, "cancel", str(done), "--yes") == (
        1, "", f"finejobs: error: cannot cancel pipeline run {done}: it is succeeded\n")
    assert run(capsys, clean_db, "show", "999") == (1, "", "finejobs: error: no pipeline run with id 999\n")
    code, _, err = run(capsys, clean_db, "show", "0")
    assert code == 2 and "not a pipeline run id" in err
    code, _, err = run(capsys, clean_db, "list", "--state", "bogus")
    assert code == 2 and "Invalid value for '--state'" in err
