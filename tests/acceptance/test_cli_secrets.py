"""Acceptance: no ``finejobs`` command prints a password, nor does a worker log one.

Every command runs in a subprocess against URLs that carry a password: reachable ones (the local server
uses trust authentication, which ignores the password, so the command works and its output can be read)
and unreachable ones (port 1, or a host name made from an unencoded '@' in the password), given in the
environment, with --database-url, or in a TOML shard map (url and url_env). The passwords hold the markers
below, in every form (as written, percent-encoded, decoded, each part around an '@'): none may ever appear
in stdout or stderr.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

import finejobs
from finejobs import devdb
from finejobs.store import libpq_url

from .helpers import REPO_ROOT, Result, WorkerProcess, cli_env, run_cli, wait_for

APP = "tests.acceptance.app_secrets:queue"
JOBS_APP = "tests.acceptance.app_jobs:queue"
B_URL_ENV = "SECRETS_ACCEPTANCE_B_URL"  # not FINEJOBS_*: cli_env drops those
MARKERS = ("Zq7", "Kx8", "Qm4")  # every password below holds one; none may ever be printed


def with_password(url: str, password: str | None = None, query: str | None = None) -> str:
    """``url`` with a user-info password and/or more query-string parameters."""
    parts = urlsplit(url)
    if parts.password is not None:
        pytest.skip("the test server's URL has a password of its own")
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user}:{password}@{host}"
    new_query = "&".join(q for q in (parts.query, query) if q)
    return urlunsplit(parts._replace(netloc=netloc, query=new_query))


# Reachable shapes: a function of the plain URL of a test database.
REACHABLE: dict[str, Callable[[str], str]] = {
    # decoded: "Zq7@Kx8(y):/": an '@', parentheses, ':' and '/', percent-encoded as they must be
    "user-info": lambda url: with_password(url, "Zq7%40Kx8%28y%29%3A%2F"),
    "query-string": lambda url: with_password(url, query="sslmode=disable&password=Qm4%26w"),
}
# Unreachable shapes.
UNREACHABLE: dict[str, str] = {
    "user-info": "postgresql://postgres:Zq7pw@127.0.0.1:1/x",
    "query-string": "postgresql://postgres@127.0.0.1:1/x?connect_timeout=5&password=Qm4w",
    "percent-encoded": "postgresql://postgres:Zq7%40Kx8%2F@127.0.0.1:1/x",
    # SQLAlchemy reads the password "Zq7" and the host "Kx8@127.0.0.1", which then fails to resolve
    "unencoded-at": "postgresql://postgres:Zq7@Kx8@127.0.0.1:5432/x",
    "raw-specials": "postgresql://postgres:Zq7 (x)#?&Kx8@127.0.0.1:1/x",
    "first-query-parameter": "postgresql://postgres@127.0.0.1:1/x?password=Qm4w&sslmode=disable",
    "conninfo": "host=127.0.0.1 port=1 password=Zq7pw",
}
# Every command; "{job}" is a job id in the database.
COMMANDS: dict[str, list[str]] = {
    "migrate": ["migrate"],
    "stats": ["stats"],
    "jobs-list": ["jobs", "list", "--json"],
    "jobs-show": ["jobs", "show", "{job}"],
    "jobs-cancel": ["jobs", "cancel", "{job}"],
    "jobs-retry": ["jobs", "retry", "{job}"],
    "enqueue": ["enqueue", "touch", "--payload", "{}"],
    "enqueue-app": ["enqueue", "touch", "--app", APP, "--payload", "{}"],
    "schedules-list": ["schedules", "list"],
    "shards-list": ["shards", "list"],
    "shards-add": ["shards", "add", "s-1"],
    "shards-drop": ["shards", "drop", "s-1"],
    "shards-move": ["shards", "move", "s-1", "--to", "default", "--wait", "1"],
    "worker": ["worker", "--app", APP],
}


def assert_no_password(result: Result | str, where: str = "") -> None:
    text = result if isinstance(result, str) else result.stdout + result.stderr
    for marker in MARKERS:
        assert marker not in text, f"{where}: password marker {marker!r} printed:\n{text}"


def assert_one_line_error(result: Result) -> None:
    assert result.code == 1, (result.args, result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finejobs: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "unexpected" not in result.stderr, result.stderr
    assert "***" in lines[0], lines[0]  # the URL is shown, its password masked


def run_many(calls: list[tuple[list[str], dict[str, Any]]]) -> list[Result]:
    """Independent CLI calls, concurrently: (args, run_cli keywords) each."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: run_cli(*call[0], **call[1]), calls))


@pytest.fixture(scope="module")
def own(server_url: str) -> Iterator[list[str]]:
    """Two migrated databases of this module's own (shards add and drop are DDL)."""
    made = [devdb.create_database(server_url, prefix="finejobs_secrets") for _ in range(2)]
    for url in made:
        queue = finejobs.Queue(url)
        try:
            queue.migrate()
        finally:
            queue.close()
    yield made
    for url in made:
        devdb.drop_database(server_url, url)


def enqueue_touch(url: str, shard: str = "default", n: int = 1) -> list[int]:
    queue = finejobs.Queue(url)

    @queue.job("touch")
    def _touch(payload: dict[str, Any]) -> None:  # never run here
        raise AssertionError("not run in the test process")

    try:
        return [queue.enqueue("touch", {}, shard=shard).id for _ in range(n)]
    finally:
        queue.close()


def state(url: str, job_id: int) -> str | None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT state FROM finejobs_jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def start_worker(tmp_path: Path, name: str, *args: str, url: str | None, **env: str) -> WorkerProcess:
    log_path, err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with log_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finejobs", *args, "worker", "--app", APP, "--poll-interval", "0.1"],
            cwd=REPO_ROOT, env=cli_env(url, **env), stdout=out, stderr=err,
        )
    worker = WorkerProcess(proc, log_path, err_path, name)
    wait_for(lambda: "started:" in worker.log or proc.poll() is not None, timeout=15, what="worker start",
             context=worker.describe)
    assert proc.poll() is None, worker.describe()
    return worker


def stop(worker: WorkerProcess) -> None:
    try:
        assert worker.terminate() == 0, worker.describe()
    finally:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait(10)


# ---------------------------------------------------------------- unreachable: every command, every shape

# Every command with the two main shapes; every other shape with a few commands. Half the cases pass the URL
# with --database-url (on the group or the command), the others in FINEJOBS_DATABASE_URL.
UNREACHABLE_CASES = [
    *[(shape, command) for shape in ("user-info", "query-string") for command in COMMANDS],
    *[(shape, command) for shape in UNREACHABLE if shape not in ("user-info", "query-string")
      for command in ("stats", "jobs-show", "worker", "shards-add")],
]


@pytest.fixture(scope="module")
def unreachable_results() -> dict[tuple[str, str], Result]:
    calls = []
    for n, (shape, command) in enumerate(UNREACHABLE_CASES):
        url = UNREACHABLE[shape]
        args = [a.replace("{job}", "1") for a in COMMANDS[command]]
        if n % 3 == 0:
            calls.append((args, {"url": url}))
        elif n % 3 == 1:
            calls.append((["--database-url", url, *args], {"url": None}))
        else:
            calls.append(([*args, "--database-url", url], {"url": None}))
    return dict(zip(UNREACHABLE_CASES, run_many(calls), strict=True))


@pytest.mark.parametrize(("shape", "command"), UNREACHABLE_CASES, ids=[f"{s}-{c}" for s, c in UNREACHABLE_CASES])
def test_unreachable_url_with_a_password(shape: str, command: str,
                                         unreachable_results: dict[tuple[str, str], Result]) -> None:
    result = unreachable_results[(shape, command)]
    assert_no_password(result, f"{shape} {command}")
    assert_one_line_error(result)


# ---------------------------------------------------------------- reachable: every command works, prints none


@pytest.mark.parametrize("shape", list(REACHABLE))
def test_reachable_url_with_a_password(shape: str, own: list[str], tmp_path: Path) -> None:
    plain = own[0]
    url = REACHABLE[shape](plain)
    job = enqueue_touch(plain)[0]

    def run(command: str, *, option: bool = False) -> Result:
        args = [a.replace("{job}", str(job)) for a in COMMANDS[command]]
        result = run_cli("--database-url", url, *args, url=None) if option else run_cli(*args, url=url)
        assert_no_password(result, f"{shape} {command}")
        return result.ok()

    read_only = ["migrate", "stats", "jobs-list", "jobs-show", "enqueue", "enqueue-app", "schedules-list",
                 "shards-list"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(read_only, pool.map(lambda c: run(c, option=read_only.index(c) % 2 == 1), read_only),
                           strict=True))
    assert "up to date" in results["migrate"].stdout
    assert job in [j["id"] for j in results["jobs-list"].json()]
    assert run("jobs-cancel").stdout.strip() == f"job {job} is cancelled"
    assert run("jobs-retry", option=True).stdout.startswith(f"job {job} is available")
    assert run("shards-add").stdout.strip() == "added: s-1"
    assert "s-1" in run("shards-list", option=True).stdout
    assert run("shards-drop").stdout.startswith("dropped: s-1")
    # a move needs a shard map (test_shard_map_with_passwords): with one URL, a one-line refusal
    refused = run_cli(*COMMANDS["shards-move"], url=url)
    assert_no_password(refused, f"{shape} shards-move")
    assert refused.code == 1 and refused.stderr.startswith("finejobs: error: moving a shard needs a shard map")

    # a worker: its log lines, even one quoting a handler's error that holds the URL, show no password
    worker = start_worker(tmp_path, f"worker-{shape}", url=url)
    try:
        failing = int(run_cli("enqueue", "leak", "--app", APP, "--payload", "{}", url=url).ok().stdout)
        wait_for(lambda: state(plain, failing) == "failed", timeout=20, what="the leak job to fail",
                 context=worker.describe)
        shown = run_cli("jobs", "show", str(failing), url=url).ok()
        as_json = run_cli("jobs", "show", str(failing), "--json", url=url).ok()
        listed = run_cli("jobs", "list", "--json", "--state", "failed", url=url).ok()
    finally:
        stop(worker)
    assert "ConnectionError: could not reach " in shown.stdout and "***" in shown.stdout, shown.stdout
    assert as_json.json()["errors"][0]["message"].startswith("could not reach ")
    for result in (shown, as_json, listed):
        assert_no_password(result, f"{shape} jobs show of the leak job")
    assert "could not reach " in worker.log and "***" in worker.log, worker.log
    assert_no_password(worker.log + worker.stderr, f"{shape} worker log")


# ---------------------------------------------------------------- a TOML shard map: url and url_env


def write_map(path: Path, url_a: str, b_shards: list[str]) -> Path:
    path.write_text(
        'default = "a"\n\n'
        f"[databases.a]\nurl = {json.dumps(url_a)}\n\n"
        f"[databases.b]\nurl_env = {json.dumps(B_URL_ENV)}\nshards = {json.dumps(b_shards)}\n"
    )
    return path


def test_shard_map_with_passwords(own: list[str], tmp_path: Path) -> None:
    plain_a, plain_b = own
    url_a, url_b = REACHABLE["user-info"](plain_a), REACHABLE["query-string"](plain_b)
    shard_map = write_map(tmp_path / "shards.toml", url_a, b_shards=["mv"])
    env = {"FINEJOBS_SHARD_MAP": str(shard_map), B_URL_ENV: url_b}
    moving = enqueue_touch(plain_a, shard="mv", n=2)  # enqueued in a before the map placed mv in b

    calls: list[tuple[list[str], dict[str, Any]]] = [
        (["migrate"], {"url": None, **env}), (["stats"], {"url": None, **env}),
        (["jobs", "list"], {"url": None, **env}), (["shards", "list"], {"url": None, **env}),
        (["--shard-map", str(shard_map), "schedules", "list"], {"url": None, B_URL_ENV: url_b}),
    ]
    for result in run_many(calls):
        assert_no_password(result, " ".join(result.args))
        result.ok()
    moved = run_cli("shards", "move", "mv", "--to", "b", "--wait", "5", url=None, **env)
    assert_no_password(moved, "shards move")
    assert moved.ok().stdout.splitlines()[-1] == "moved mv to b: 2 from a"
    with psycopg.connect(libpq_url(plain_b), autocommit=True) as conn:
        moved_from = {str(r[0]) for r in conn.execute("SELECT moved_from FROM finejobs_jobs WHERE shard = 'mv'")}
    assert moved_from == {f"a/{job}" for job in moving}

    worker = start_worker(tmp_path, "map-worker", url=None, **env)
    stop(worker)
    assert "a=postgresql://postgres:***@" in worker.log and "b=postgresql://postgres@" in worker.log, worker.log
    assert_no_password(worker.log + worker.stderr, "worker with a shard map")

    # the same map, unreachable
    down = write_map(tmp_path / "down.toml", UNREACHABLE["user-info"], b_shards=["mv"])
    env_down = {"FINEJOBS_SHARD_MAP": str(down), B_URL_ENV: UNREACHABLE["query-string"]}
    for result in run_many([(args, {"url": None, **env_down}) for args in (
            ["stats"], ["jobs", "list"], ["shards", "move", "mv", "--to", "b", "--wait", "1"],
            ["worker", "--app", APP])]):
        assert_no_password(result, " ".join(result.args))
        assert_one_line_error(result)


@pytest.mark.parametrize("url_line", [
    'url = "mysql://u:Zq7@Kx8@h/x"',  # not a PostgreSQL URL: quoted in the error, masked
    'url = {password = "Zq7"}',  # not a string: its value is not quoted
    'url = "postgresql://u@h:notaport/x?password=Qm4w"',  # a bad port: quoted in the error, masked
])
def test_shard_map_errors_show_no_password(url_line: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[databases.a]\n{url_line}\n")
    result = run_cli("--shard-map", str(path), "stats", url=None)
    assert_no_password(result, url_line)
    assert result.code == 1 and result.stderr.startswith("finejobs: error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


# ---------------------------------------------------------------- a space in the password


def run_worker_briefly(tmp_path: Path, url: str) -> tuple[int | None, str]:
    """Start a worker, give it a second, SIGTERM it: (its exit status, its stdout and stderr)."""
    log_path, err_path = tmp_path / "space.out", tmp_path / "space.err"
    with log_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "finejobs", "worker", "--app", APP, "--poll-interval", "0.1"],
                                cwd=REPO_ROOT, env=cli_env(url), stdout=out, stderr=err)
    worker = WorkerProcess(proc, log_path, err_path, "space")
    try:
        wait_for(lambda: "started:" in worker.log or proc.poll() is not None, timeout=15, what="worker start",
                 context=worker.describe)
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return code, worker.log + worker.stderr


def test_worker_with_a_space_in_the_password_prints_none(own: list[str], tmp_path: Path) -> None:
    _, output = run_worker_briefly(tmp_path, with_password(own[0], "Zq7%40Kx8%20%28y%29"))
    assert "started:" in output
    assert_no_password(output, "worker, a space in the password")


def test_worker_with_a_space_in_the_password_runs(own: list[str], tmp_path: Path) -> None:
    code, output = run_worker_briefly(tmp_path, with_password(own[0], "Zq7%20Kx8"))
    assert code == 0 and "died" not in output, output
