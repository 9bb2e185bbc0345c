"""Acceptance: operating a running system from the shell, with the real CLI in subprocesses.

Two ``finejobs worker`` processes serve the same database. ``finejobs pause --shard X`` (or ``--kind K``)
stops both claiming that work within about a second while the rest keeps running; the pause is stored, so
it survives a worker restart; ``finejobs resume`` lets the work run. ``finejobs workers`` lists the worker
processes while they run and forgets one that stopped cleanly. Bulk actions by filter: ``--dry-run`` only
counts, ``--all-matching`` acts on every match, and each action is in the audit log with its actor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import finejobs

from .helpers import Db, Result, WorkerProcess, run_cli, wait_for

PROPAGATION = 1.5  # seconds: every worker honours a pause within about a second (the issue: within 1 s)
StartWorker = Callable[..., WorkerProcess]


@pytest.fixture(autouse=True)
def no_pauses(jobdb: Db) -> Iterator[None]:
    """Pauses, registry rows and audit entries outlive clean_db's truncation: start and end without any
    (a pause left behind would stop the workers of every later test in the session)."""
    wipe = "TRUNCATE finejobs_pauses, finejobs_workers, finejobs_audit"
    jobdb.conn.execute(wipe)
    yield
    jobdb.conn.execute(wipe)


def enqueue(url: str, kind: str, payloads: list[dict[str, Any]], *, shard: str = "default",
            max_attempts: int = 3) -> list[int]:
    """Enqueue with the library in this process (the workers validate the payloads when they run them)."""
    queue = finejobs.Queue(url)

    @queue.job(kind, retry=finejobs.Retry(max_attempts=max_attempts))
    def _handler(payload: dict[str, Any]) -> None:  # never run here
        raise AssertionError("not run in the test process")

    try:
        return [job.id for job in queue.enqueue_many(kind, payloads, shard=shard)]
    finally:
        queue.close()


def greetings(url: str, shard: str, n: int = 3) -> list[int]:
    return enqueue(url, "greet", [{"name": f"{shard}-{i}"} for i in range(n)], shard=shard)


def naps(url: str, shard: str, n: int = 3) -> list[int]:
    return enqueue(url, "nap", [{"seconds": 0}] * n, shard=shard)


def states(db: Db, ids: list[int]) -> set[str]:
    found = db.states()
    return {found[i] for i in ids}


def untouched(db: Db, ids: list[int]) -> bool:
    """Never claimed: still available, no attempt made."""
    rows = db.conn.execute("SELECT state, attempt FROM finejobs_jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    return len(rows) == len(ids) and all(state == "available" and attempt == 0 for state, attempt in rows)


def all_succeeded(db: Db, ids: list[int], *workers: WorkerProcess) -> None:
    wait_for(lambda: states(db, ids) == {"succeeded"}, timeout=20, what=f"jobs {ids} to succeed",
             context=lambda: "\n".join(w.describe() for w in workers))


def ok(*args: str, url: str) -> Result:
    return run_cli(*args, url=url).ok()


# ---------------------------------------------------------------- pause and resume across two workers


def test_pause_a_shard_across_two_worker_processes_and_a_restart(jobdb: Db, start_worker: StartWorker) -> None:
    url = jobdb.url
    first, second = start_worker(), start_worker()
    warm = greetings(url, "sa", 2) + greetings(url, "sb", 2)
    all_succeeded(jobdb, warm, first, second)  # both shards run before the pause

    paused = ok("pause", "--shard", "sb", "--reason", "gateway maintenance", url=url)
    assert paused.stdout.strip() == "paused shard sb (gateway maintenance)"
    time.sleep(PROPAGATION)
    held = greetings(url, "sb", 4)
    running = greetings(url, "sa", 4)
    all_succeeded(jobdb, running, first, second)  # the other shard keeps running
    time.sleep(PROPAGATION)
    assert untouched(jobdb, held), "no worker process claims a job of the paused shard"

    listed = ok("paused", "--json", url=url).json()
    assert [(p["kind"], p["shard"], p["reason"]) for p in listed] == [(None, "sb", "gateway maintenance")]
    assert listed[0]["paused_by"].startswith("cli:")
    table = ok("paused", url=url).stdout.splitlines()
    assert table[0].split() == ["KIND", "SHARD", "SINCE", "BY", "REASON"]
    assert table[1].split()[:2] == ["-", "sb"]
    stats = ok("stats", "--json", url=url).json()
    assert [(p["kind"], p["shard"]) for p in stats["paused"]] == [(None, "sb")]
    assert stats["by_shard"]["sb"]["available"] == 4 and stats["lag_seconds"]["sb"] > 0
    text = ok("stats", url=url).stdout
    assert "paused: shard sb" in text

    # The pause is stored: a worker that starts after it was made honours it too.
    assert first.terminate() == 0
    third = start_worker()
    more = greetings(url, "sa", 2)
    all_succeeded(jobdb, more, second, third)
    time.sleep(PROPAGATION)
    assert untouched(jobdb, held), "the pause survives a worker restart"

    assert ok("resume", "--shard", "sb", url=url).stdout.strip() == "resumed shard sb"
    all_succeeded(jobdb, held, second, third)
    assert ok("paused", url=url).stdout.strip() == "nothing is paused"
    assert ok("resume", "--shard", "sb", url=url).stdout.strip() == "shard sb was not paused"
    assert second.terminate() == 0 and third.terminate() == 0


def test_pause_a_kind_and_a_kind_within_a_shard(jobdb: Db, start_worker: StartWorker) -> None:
    url = jobdb.url
    first, second = start_worker(), start_worker()

    assert ok("pause", "--kind", "greet", url=url).stdout.strip() == "paused kind greet"
    time.sleep(PROPAGATION)
    held = greetings(url, "sa", 3) + greetings(url, "sb", 3)
    running = naps(url, "sa") + naps(url, "sb")
    all_succeeded(jobdb, running, first, second)  # other kinds, in the same shards, keep running
    time.sleep(PROPAGATION)
    assert untouched(jobdb, held), "no worker process claims a job of the paused kind"
    assert [(p["kind"], p["shard"]) for p in ok("paused", "--json", url=url).json()] == [("greet", None)]

    assert second.terminate() == 0
    third = start_worker()
    all_succeeded(jobdb, naps(url, "sa"), first, third)
    time.sleep(PROPAGATION)
    assert untouched(jobdb, held), "the pause survives a worker restart"

    # Narrow it: greet stays paused in sa only.
    assert ok("pause", "--kind", "greet", "--shard", "sa", url=url).stdout.strip() == "paused kind greet in shard sa"
    assert ok("resume", "--kind", "greet", url=url).stdout.strip() == "resumed kind greet"
    in_sa, in_sb = held[:3], held[3:]
    all_succeeded(jobdb, in_sb, first, third)
    time.sleep(PROPAGATION)
    assert untouched(jobdb, in_sa), "greet is still paused within shard sa"
    assert [(p["kind"], p["shard"]) for p in ok("paused", "--json", url=url).json()] == [("greet", "sa")]

    assert ok("resume", "--kind", "greet", "--shard", "sa", url=url).stdout.strip() == "resumed kind greet in shard sa"
    all_succeeded(jobdb, in_sa, first, third)
    assert first.terminate() == 0 and third.terminate() == 0


def test_pause_and_resume_refuse_to_guess(jobdb: Db) -> None:
    for command in ("pause", "resume"):
        result = run_cli(command, url=jobdb.url)
        assert result.code == 2 and result.stderr.startswith("finejobs: error: name a kind"), result.stderr
    bad = run_cli("pause", "--shard", "Bad Shard", url=jobdb.url)
    assert bad.code == 2 and "invalid shard name" in bad.stderr
    assert jobdb.conn.execute("SELECT count(*) FROM finejobs_pauses").fetchone() == (0,)


# ---------------------------------------------------------------- the worker registry


def test_workers_lists_both_processes_and_forgets_a_clean_stop(jobdb: Db, start_worker: StartWorker) -> None:
    url = jobdb.url
    first, second = start_worker(), start_worker("--shard", "sa", "--concurrency", "3")

    def pids() -> set[int]:
        return {w["pid"] for w in ok("workers", "--json", url=url).json() if w["alive"]}

    wait_for(lambda: pids() == {first.proc.pid, second.proc.pid}, timeout=15, what="both workers registered",
             context=lambda: f"{ok('workers', url=url).stdout}\n{first.describe()}\n{second.describe()}")
    listed = {w["pid"]: w for w in ok("workers", "--json", url=url).json()}
    assert listed[second.proc.pid]["concurrency"] == 3
    assert listed[second.proc.pid]["shards"] == ["sa"]
    assert {"greet", "nap", "explode", "die"} <= set(listed[first.proc.pid]["kinds"])
    table = ok("workers", url=url).stdout.splitlines()
    assert table[0].split() == ["ID", "HOST", "PID", "SHARDS", "KINDS", "CONCURRENCY", "IN_FLIGHT", "SEEN", "STATUS"]
    assert len(table) == 3 and all(line.split()[-1] == "alive" for line in table[1:])

    assert first.terminate() == 0
    assert pids() == {second.proc.pid}, "a cleanly stopped worker removes its row"
    assert second.terminate() == 0
    assert ok("workers", url=url).stdout.strip() == "no workers"


# ---------------------------------------------------------------- bulk actions by filter


def test_retry_cancel_delete_every_job_matching_a_filter(jobdb: Db, start_worker: StartWorker) -> None:
    url = jobdb.url
    failing = enqueue(url, "explode", [{"why": f"case {i}"} for i in range(5)], max_attempts=1)
    fine = greetings(url, "default", 2)
    worker = start_worker()
    wait_for(lambda: states(jobdb, failing) == {"failed"} and states(jobdb, fine) == {"succeeded"},
             what="the jobs to end", context=worker.describe)
    assert worker.terminate() == 0
    before = jobdb.states()

    dry = ok("jobs", "retry", "--state", "failed", "--all-matching", "--dry-run", url=url)
    assert dry.stdout.strip() == "would retry 5 job(s) (dry run: nothing changed)"
    as_json = ok("jobs", "retry", "--state", "failed", "--error", "BOOM: case", "--dry-run", "--json", url=url).json()
    assert (as_json["matched"], as_json["changed"], as_json["dry_run"]) == (5, 0, True)
    assert as_json["filter"] == {"state": "failed", "error": "BOOM: case"}
    assert jobdb.states() == before, "a dry run changes nothing"

    refused = run_cli("jobs", "retry", "--state", "failed", url=url)
    assert refused.code == 2 and "--all-matching" in refused.stderr
    assert run_cli("jobs", "retry", str(failing[0]), "--state", "failed", url=url).code == 2
    assert run_cli("jobs", "retry", url=url).code == 2
    contradiction = run_cli("jobs", "list", "--created-after", "2026-01-02T00:00:00Z",
                            "--created-before", "2026-01-01T00:00:00Z", url=url)
    assert contradiction.code == 2 and "must be before" in contradiction.stderr
    assert jobdb.states() == before

    assert ok("jobs", "retry", "--state", "failed", "--all-matching", url=url).stdout.strip() == "retried 5 job(s)"
    assert states(jobdb, failing) == {"available"} and states(jobdb, fine) == {"succeeded"}

    # Pages by keyset: --limit, then --cursor from where it stopped.
    first_page = run_cli("jobs", "list", "--kind", "explode", "--limit", "2", "--json-page", url=url).ok()
    page = first_page.json()
    assert [j["id"] for j in page["jobs"]] == sorted(failing, reverse=True)[:2] and page["next_cursor"]
    rest = ok("jobs", "list", "--kind", "explode", "--cursor", page["next_cursor"], "--json", url=url).json()
    assert [j["id"] for j in rest] == sorted(failing, reverse=True)[2:]
    table = run_cli("jobs", "list", "--kind", "explode", "--limit", "2", url=url).ok()
    assert f"next page: --cursor {page['next_cursor']}" in table.stderr
    listed = ok("jobs", "list", "--state", "available", "--json", url=url).json()
    assert sorted(j["id"] for j in listed) == sorted(failing)

    assert ok("jobs", "cancel", "--kind", "explode", "--all-matching", "--reason", "not needed",
              url=url).stdout.strip() == "cancelled 5 job(s)"
    assert states(jobdb, failing) == {"cancelled"}
    assert ok("jobs", "delete", "--state", "cancelled", "--dry-run", url=url).stdout.strip() == (
        "would delete 5 job(s) (dry run: nothing changed)")
    assert ok("jobs", "delete", "--state", "cancelled", "--all-matching", url=url).stdout.strip() == "deleted 5 job(s)"
    assert sorted(jobdb.states()) == sorted(fine)
    assert ok("jobs", "delete", str(fine[0]), url=url).stdout.strip() == f"job {fine[0]} deleted (it was succeeded)"
    assert sorted(jobdb.states()) == fine[1:]

    audit = jobdb.conn.execute("SELECT actor, action, count FROM finejobs_audit ORDER BY id").fetchall()
    assert [(action, count) for _, action, count in audit] == [
        ("retry matching", 5), ("cancel matching", 5), ("delete matching", 5), ("delete", 1)]
    assert all(actor.startswith("cli:") for actor, _, _ in audit)
