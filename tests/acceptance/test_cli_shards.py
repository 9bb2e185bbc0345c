"""Acceptance: ``finejobs shards ...``, ``--shard-map`` across two databases, and a worker serving a glob.

Every test works in databases of its own (created and dropped here): shard partitions are DDL, and must
not leak into the session's shared database. Jobs the test only needs as scenery are enqueued with the
library in this process; read-only CLI calls run concurrently (each CLI process costs most of a second).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

import finejobs
from finejobs import devdb
from finejobs.sharding import ShardMap, partition_name
from finejobs.store import available_migrations, libpq_url

from .helpers import REPO_ROOT, Result, WorkerProcess, cli_env, run_cli, wait_for

SHARD_APP = "tests.acceptance.app_shards:queue"
B_URL_ENV = "FINEJOBS_ACCEPTANCE_B_URL"  # the url_env of database b (not FINEJOBS_*: cli_env drops those)
STATES = ["scheduled", "available", "running", "succeeded", "failed", "expired", "cancelled"]
OTHER = "finejobs_jobs_other"  # the default partition


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def make_database(server_url: str) -> Iterator[Callable[..., str]]:
    """Make a brand-new database (migrated unless ``migrated=False``); all are dropped at teardown."""
    made: list[str] = []

    def make(*, migrated: bool = True) -> str:
        url = devdb.create_database(server_url, prefix="finejobs_shards")
        made.append(url)
        if migrated:
            queue = finejobs.Queue(url)
            try:
                queue.migrate()
            finally:
                queue.close()
        return url

    yield make
    for url in made:
        devdb.drop_database(server_url, url)


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def count(url: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> int:
    return int(query(url, f"SELECT count(*) FROM finejobs_jobs WHERE {where}", params)[0][0])


def partitions(url: str) -> set[str]:
    rows = query(url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                      "WHERE i.inhparent = 'finejobs_jobs'::regclass")
    return {r[0] for r in rows}


def enqueue(*args: str, url: str | None, **env: str) -> int:
    """Run ``finejobs ... enqueue ...``: the new job's id."""
    return int(run_cli(*args, url=url, **env).ok().stdout.strip())


@contextmanager
def direct(url: str | None = None, shard_map: ShardMap | None = None) -> Iterator[finejobs.Queue]:
    """A Queue in this process, with the kind ``touch``, for jobs a test only needs as scenery."""
    queue = finejobs.Queue(url, shard_map=shard_map)

    @queue.job("touch")
    def _touch(payload: dict[str, Any]) -> None:  # never run here
        raise AssertionError("not run in the test process")

    try:
        yield queue
    finally:
        queue.close()


def run_all(*calls: tuple[Any, ...], **env: str) -> list[Result]:
    """Run independent read-only CLI calls concurrently: ``(arg, ...)`` each, no URL (a shard map in env)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run_cli(*args, url=None, **env).ok(), calls))


def assert_one_line_error(result: Result, *fragments: str, code: int = 1) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("finejobs: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def table_rows(stdout: str) -> tuple[list[str], list[list[str]]]:
    """A `shards list` table: its header and its rows, split on whitespace ('a (stray)' is rejoined)."""
    lines = stdout.strip().splitlines()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        if len(cells) > 2 and cells[2] == "(stray)":
            cells[1:3] = [f"{cells[1]} (stray)"]
        rows.append(cells)
    return lines[0].split(), rows


def write_map(path: Path, url_a: str, b_shards: list[str], a_shards: list[str] | None = None) -> Path:
    """A TOML shard map: database a by url (the default), database b by url_env."""
    path.write_text(
        'default = "a"\n\n'
        f"[databases.a]\nurl = {json.dumps(url_a)}\nshards = {json.dumps(a_shards or [])}\n\n"
        f"[databases.b]\nurl_env = {json.dumps(B_URL_ENV)}\nshards = {json.dumps(b_shards)}\n"
    )
    return path


# ---------------------------------------------------------------- 1. one database


def test_shards_add_list_drop_on_one_database(make_database: Callable[..., str]) -> None:
    url = make_database()
    own_1, own_2 = partition_name("district-1"), partition_name("district-2")
    # a shard name with '-' gets a hash suffix (district-1 and district_1 must not share a partition)
    assert own_1.startswith("finejobs_jobs_district_1") and own_2.startswith("finejobs_jobs_district_2")

    added = run_cli("shards", "add", "district-1", "district-2", url=url).ok()
    assert added.stdout.splitlines() == ["added: district-1", "added: district-2"]
    assert partitions(url) == {OTHER, own_1, own_2}
    again = run_cli("shards", "add", "district-1", "district-2", url=url).ok()
    assert again.stdout.splitlines() == ["exists: district-1", "exists: district-2"]
    assert partitions(url) == {OTHER, own_1, own_2}

    waiting = enqueue("enqueue", "touch", "--shard", "district-1", "--payload", "{}", url=url)
    loose = enqueue("enqueue", "touch", "--shard", "plain-7", "--payload", "{}", url=url)
    with direct(url) as queue:
        done = [queue.enqueue("touch", {}, shard="district-1").id for _ in range(2)]
        for job_id in done:
            queue.cancel(job_id)
    # the rows really are in the shards' partitions
    assert count(url, "tableoid = %s::regclass", (own_1,)) == 3
    assert count(url, "tableoid = %s::regclass AND id = %s", (OTHER, loose)) == 1

    text, as_json = run_all(("shards", "list"), ("shards", "list", "--json"), FINEJOBS_DATABASE_URL=url)
    header, rows = table_rows(text.stdout)
    assert header == ["SHARD", "DATABASE", "PARTITION", *(s.upper() for s in STATES)]
    assert [row[0] for row in rows] == ["district-1", "district-2", "plain-7"]
    by_name = {row[0]: row[1:] for row in rows}
    #                                 database   partition  sch  avail run  succ fail exp  canc
    assert by_name["district-1"] == ["default", own_1, "0", "1", "0", "0", "0", "0", "2"]
    assert by_name["district-2"] == ["default", own_2, "0", "0", "0", "0", "0", "0", "0"]
    assert by_name["plain-7"] == ["default", OTHER, "0", "1", "0", "0", "0", "0", "0"]
    listed = {s["shard"]: s for s in as_json.json()}
    assert listed["district-1"] == {"shard": "district-1", "database": "default", "partition": own_1,
                                    "own_partition": True, "placed_here": True,
                                    "counts": {"available": 1, "cancelled": 2}}
    assert listed["district-2"]["counts"] == {} and listed["district-2"]["own_partition"] is True
    assert listed["plain-7"] == {"shard": "plain-7", "database": "default", "partition": OTHER,
                                 "own_partition": False, "placed_here": True, "counts": {"available": 1}}

    # refused while a job waits there: one line, exit 1, the partition and its jobs untouched
    refused = run_cli("shards", "drop", "district-1", url=url)
    assert_one_line_error(refused, "unfinished", "'district-1'")
    assert refused.stdout == ""
    assert own_1 in partitions(url)
    assert count(url, "shard = 'district-1' AND tableoid = %s::regclass", (own_1,)) == 3

    assert run_cli("jobs", "cancel", str(waiting), url=url).ok().stdout.strip() == f"job {waiting} is cancelled"
    dropped = run_cli("shards", "drop", "district-1", url=url).ok()
    assert dropped.stdout.strip() == "dropped: district-1 (3 finished job(s) kept in the default partition)"
    assert partitions(url) == {OTHER, own_2}
    assert count(url, "shard = 'district-1' AND state = 'cancelled' AND tableoid = %s::regclass", (OTHER,)) == 3

    after, no_partition = (run_cli("shards", "list", "--json", url=url),
                           run_cli("shards", "drop", "plain-7", url=url))
    assert {s["shard"]: (s["partition"], s["counts"]) for s in after.ok().json()} == {
        "district-1": (OTHER, {"cancelled": 3}), "district-2": (own_2, {}), "plain-7": (OTHER, {"available": 1})}
    assert_one_line_error(no_partition, "'plain-7' has no partition")


# (args, the bad name the one-line message must quote)
BAD_NAMES: list[tuple[list[str], str]] = [
    (["shards", "add", "district-9", "Bad Shard"], "Bad Shard"),
    (["shards", "add", "--", "-dash-first"], "-dash-first"),
    (["shards", "drop", "UPPER"], "UPPER"),
    (["shards", "move", "no/slash", "--to", "b"], "no/slash"),
    (["enqueue", "touch", "--payload", "{}", "--shard", "x" * 64], "x" * 64),
    (["worker", "--app", SHARD_APP, "--shard", "district-*", "--shard", "Dist*"], "Dist*"),
]
BAD_IDS = ["add", "add-leading-dash", "drop", "move", "enqueue-too-long", "worker-pattern"]


@pytest.fixture(scope="module")
def bad_name_results(server_url: str) -> Iterator[tuple[str, dict[str, Result]]]:
    """Every bad-name case, run concurrently against one migrated database of their own."""
    url = devdb.create_database(server_url, prefix="finejobs_shards")
    try:
        with direct(url) as queue:
            queue.migrate()
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {case_id: pool.submit(run_cli, *args, url=url) for case_id, (args, _) in zip(
                BAD_IDS, BAD_NAMES, strict=True)}
            results = {case_id: future.result() for case_id, future in futures.items()}
        yield url, results
    finally:
        devdb.drop_database(server_url, url)


@pytest.mark.parametrize("case", BAD_IDS)
def test_invalid_shard_names_are_usage_errors(case: str, bad_name_results: tuple[str, dict[str, Result]]) -> None:
    url, results = bad_name_results
    bad = BAD_NAMES[BAD_IDS.index(case)][1]
    result = results[case]
    assert_one_line_error(result, "invalid shard", repr(bad), code=2)
    assert result.stdout == ""
    # nothing was done before the bad name was refused (district-9 came first on the add line)
    assert partitions(url) == {OTHER}
    assert count(url) == 0


# ---------------------------------------------------------------- 2. a shard map over two databases


def test_shard_map_across_two_databases(make_database: Callable[..., str], tmp_path: Path) -> None:
    url_a, url_b = make_database(migrated=False), make_database(migrated=False)
    shard_map = write_map(tmp_path / "shards.toml", url_a, b_shards=["district-1?"], a_shards=["district-1"])
    env = {B_URL_ENV: url_b}
    with_map = {"FINEJOBS_SHARD_MAP": str(shard_map), **env}

    migrated = run_cli("--shard-map", str(shard_map), "migrate", url=None, **env).ok()
    names = [f"{m.version:04d}_{m.name}" for m in available_migrations()]
    assert migrated.stdout.splitlines() == [f"{db}: applied {name}" for db in ("a", "b") for name in names]
    for url in (url_a, url_b):
        assert count(url) == 0  # the job table exists in both
    again = run_cli("migrate", url=None, **with_map).ok()
    assert again.stdout.splitlines() == [f"{db}: up to date (schema version {len(names)})" for db in ("a", "b")]

    in_b = enqueue("enqueue", "touch", "--shard", "district-12", "--payload", '{"n": 12}', url=None, **with_map)
    default = enqueue("enqueue", "touch", "--payload", "{}", url=None, **with_map)
    assert query(url_b, "SELECT id, shard, payload FROM finejobs_jobs") == [(in_b, "district-12", {"n": 12})]
    assert query(url_a, "SELECT id, shard FROM finejobs_jobs") == [(default, "default")]
    with direct(shard_map=ShardMap({"a": url_a, "b": url_b}, {"a": ["district-1"], "b": ["district-1?"]},
                                   default="a")) as queue:
        in_a = queue.enqueue("touch", {}, shard="district-1").id
        also_b = queue.enqueue("touch", {}, shard="district-13").id
    with direct(url_a) as queue:  # a stray: put straight into a, for a shard the map places in b
        stray = queue.enqueue("touch", {}, shard="district-13").id
    assert count(url_a) == 3 and count(url_b) == 2

    stats, listed, table, shown, shards_text, shards_json = run_all(
        ("stats", "--json"), ("jobs", "list", "--json"), ("jobs", "list"),
        ("jobs", "show", str(in_b), "--database", "b", "--json"), ("shards", "list"), ("shards", "list", "--json"),
        **with_map)

    assert stats.json()["total"] == 5
    assert stats.json()["by_state"]["available"] == 5
    assert stats.json()["by_shard"] == {"default": {"available": 1}, "district-1": {"available": 1},
                                        "district-12": {"available": 1}, "district-13": {"available": 2}}

    assert sorted((j["shard"], j["id"]) for j in listed.json()) == sorted(
        [("district-12", in_b), ("district-13", also_b), ("district-1", in_a), ("default", default),
         ("district-13", stray)])
    assert sorted(line.split()[2] for line in table.stdout.splitlines()[1:]) == [
        "default", "district-1", "district-12", "district-13", "district-13"]
    assert (shown.json()["shard"], shown.json()["payload"]) == ("district-12", {"n": 12})

    _, rows = table_rows(shards_text.stdout)
    placed = {(row[0], row[1]): row[3:] for row in rows}
    assert sorted(placed) == [("default", "a"), ("district-1", "a"), ("district-12", "b"),
                              ("district-13", "a (stray)"), ("district-13", "b")]
    assert placed[("district-13", "a (stray)")][STATES.index("available")] == "1"
    assert placed[("district-13", "b")][STATES.index("available")] == "1"
    assert sorted((s["shard"], s["database"]) for s in shards_json.json() if not s["placed_here"]) == [
        ("district-13", "a")]


# ---------------------------------------------------------------- 3. moving a shard


def test_shards_move_takes_waiting_jobs_to_the_new_database(make_database: Callable[..., str],
                                                            tmp_path: Path) -> None:
    url_a, url_b = make_database(), make_database()
    env = {B_URL_ENV: url_b}
    old_map = write_map(tmp_path / "old.toml", url_a, b_shards=["district-1?"])
    added = run_cli("--shard-map", str(old_map), "shards", "add", "district-3", url=None, **env).ok()
    assert added.stdout.strip() == "added: district-3 in database a"
    with direct(shard_map=ShardMap({"a": url_a, "b": url_b}, {"b": ["district-1?"]}, default="a")) as queue:
        waiting = [queue.enqueue("touch", {"n": n}, shard="district-3").id for n in range(3)]
        finished = queue.enqueue("touch", {}, shard="district-3").id
        queue.cancel(finished)
        other = queue.enqueue("touch", {}, shard="district-4").id
    assert count(url_a, "shard = 'district-3'") == 4 and count(url_b) == 0

    new_map = write_map(tmp_path / "new.toml", url_a, b_shards=["district-1?", "district-3"])
    moved = run_cli("--shard-map", str(new_map), "shards", "move", "district-3", "--to", "b", "--wait", "5",
                    url=None, **env).ok()
    assert moved.stdout.splitlines()[-1] == "moved district-3 to b: 3 from a", moved.stdout

    # a keeps only the finished job and the other shard; b has the three waiting jobs, payloads intact
    assert query(url_a, "SELECT id, shard, state FROM finejobs_jobs ORDER BY id") == [
        (finished, "district-3", "cancelled"), (other, "district-4", "available")]
    assert count(url_a, "id = ANY(%s)", (waiting,)) == 0
    assert sorted(query(url_b, "SELECT shard, state, payload->>'n' FROM finejobs_jobs")) == [
        ("district-3", "available", str(n)) for n in range(3)]
    assert sorted(r[0] for r in query(url_b, "SELECT moved_from FROM finejobs_jobs")) == sorted(
        f"a/{job_id}" for job_id in waiting)
    assert int(query(url_a, "SELECT count(*) FROM finejobs_shard_moves")[0][0]) == 0, "the outbox is emptied"

    listed, again = run_all(("shards", "list", "--json"),
                            ("shards", "move", "district-3", "--to", "b", "--wait", "5"),
                            FINEJOBS_SHARD_MAP=str(new_map), **env)
    by_place = {(s["shard"], s["database"]): s for s in listed.json()}
    assert by_place[("district-3", "b")]["counts"] == {"available": 3}
    assert by_place[("district-3", "b")]["placed_here"] is True
    assert by_place[("district-3", "a")]["counts"] == {"cancelled": 1}  # finished jobs stay where they ran
    assert by_place[("district-3", "a")]["placed_here"] is False
    assert again.stdout.splitlines()[-1] == "moved district-3 to b: nothing to move"
    assert count(url_b) == 3
    # a's leftover partition: --database-url wins over the map, so the operator can drop it there
    dropped = run_cli("--database-url", url_a, "shards", "drop", "district-3", url=None, **env).ok()
    assert dropped.stdout.strip() == "dropped: district-3 (1 finished job(s) kept in the default partition)"
    assert partitions(url_a) == {OTHER}


# ---------------------------------------------------------------- 4. a worker serving a glob


def test_worker_serves_a_glob_including_shards_that_appear_later(make_database: Callable[..., str],
                                                                 tmp_path: Path) -> None:
    url = make_database()
    run_cli("shards", "add", "district-1", url=url).ok()
    with direct(url) as queue:
        first = queue.enqueue("touch", {}, shard="district-1").id
        outside = queue.enqueue("touch", {}, shard="other").id

    def state(job_id: int) -> str:
        return str(query(url, "SELECT state FROM finejobs_jobs WHERE id = %s", (job_id,))[0][0])

    log_path, err_path = tmp_path / "worker.out", tmp_path / "worker.err"
    with log_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finejobs", "worker", "--app", SHARD_APP, "--shard", "district-*",
             "--poll-interval", "0.1"],
            cwd=REPO_ROOT, env=cli_env(url), stdout=out, stderr=err,
        )
    worker = WorkerProcess(proc, log_path, err_path, "shards-acceptance")
    try:
        wait_for(lambda: "started:" in worker.log or proc.poll() is not None, timeout=15, what="worker start",
                 context=worker.describe)
        assert proc.poll() is None, worker.describe()
        wait_for(lambda: state(first) == "succeeded", timeout=15, what="the district-1 job to succeed",
                 context=worker.describe)

        later = enqueue("enqueue", "touch", "--shard", "district-5", "--payload", "{}", url=url)
        wait_for(lambda: state(later) == "succeeded", timeout=15, what="the district-5 job (a new shard) to succeed",
                 context=worker.describe)
        with direct(url) as queue:
            more = queue.enqueue("touch", {}, shard="other").id
            last = queue.enqueue("touch", {}, shard="district-1").id
        wait_for(lambda: state(last) == "succeeded", timeout=15, what="a second district-1 job to succeed",
                 context=worker.describe)

        assert worker.terminate() == 0, worker.describe()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert worker.stderr == ""
    assert "stopped:" in worker.log
    assert state(outside) == "available" and state(more) == "available", "shard 'other' is not district-*"
    assert f"job {outside} " not in worker.log and f"job {more} " not in worker.log
    assert count(url, "state = 'succeeded'") == 3


def test_worker_with_a_shard_map_serves_each_database_and_stops_on_sigterm(make_database: Callable[..., str],
                                                                           tmp_path: Path) -> None:
    url_a, url_b = make_database(), make_database()
    shard_map = write_map(tmp_path / "shards.toml", url_a, b_shards=["district-1?"], a_shards=["district-1"])
    with direct(shard_map=ShardMap({"a": url_a, "b": url_b}, {"a": ["district-1"], "b": ["district-1?"]},
                                   default="a")) as queue:
        in_a = queue.enqueue("touch", {}, shard="district-1").id
        in_b = queue.enqueue("touch", {}, shard="district-12").id
        elsewhere = queue.enqueue("touch", {}, shard="other").id  # in a, but not district-*

    def state(url: str, job_id: int) -> str:
        return str(query(url, "SELECT state FROM finejobs_jobs WHERE id = %s", (job_id,))[0][0])

    log_path, err_path = tmp_path / "worker.out", tmp_path / "worker.err"
    env = {**cli_env(None), "FINEJOBS_SHARD_MAP": str(shard_map), B_URL_ENV: url_b}
    with log_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finejobs", "worker", "--app", SHARD_APP, "--shard", "district-*",
             "--poll-interval", "0.1"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=err,
        )
    worker = WorkerProcess(proc, log_path, err_path, "shard-map-worker")
    try:
        wait_for(lambda: state(url_a, in_a) == "succeeded" and state(url_b, in_b) == "succeeded", timeout=20,
                 what="one job in each database to succeed", context=worker.describe)
        assert worker.terminate() == 0, worker.describe()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert worker.stderr == ""
    assert worker.log.count("started: database=") == 2  # one worker per database (a WorkerGroup)
    assert state(url_a, elsewhere) == "available"
