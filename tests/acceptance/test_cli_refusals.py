"""Acceptance: every bad option value is refused with one line on stderr, ``finejobs: error: ...``, exit 2 (a
usage error, before any connection) or 1 (refused by the library), never a traceback or an "unexpected" error.

Usage errors run against an unreachable URL: a value that slipped past the option's check would end in
"database unavailable" (exit 1) instead. NUL characters cannot pass through a command line (argv strings end
at NUL), so those cases call the CLI's entry point in this process; invalid UTF-8 bytes in argv arrive as lone
surrogates ("\\udcff"), and are passed to the subprocess as such.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from finejobs.cli import main
from finejobs.limits import MAX_ATTEMPTS, MAX_UNIQUE_KEY_BYTES

from .helpers import Result, run_cli

APP = "tests.acceptance.app_jobs:queue"
DOWN = "postgresql://postgres@127.0.0.1:1/x"  # nothing listens on port 1
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than json.loads can go
DEEPISH = "[" * 70 + "]" * 70  # deeper than the 64 levels a payload may have


def assert_refused(code: int, stderr: str, stdout: str, fragment: str, expected: int | tuple[int, ...]) -> None:
    codes = expected if isinstance(expected, tuple) else (expected,)
    assert code in codes, (code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("finejobs: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in stdout + stderr and "unexpected" not in stderr, stderr
    if codes == (2,):
        assert "database unavailable" not in stderr


# (id, args, url: DOWN or "db" (the session's migrated database), fragment, exit status(es), stdin)
CASES: list[tuple[str, list[str], str, str, int | tuple[int, ...], str | None]] = [
    # worker durations: finite, within documented bounds
    *[(f"worker-{option}-{value}", ["worker", "--app", APP, f"--{option}", value], DOWN,
       f"Invalid value for '--{option}'", 2, None)
      for option, values in (("lease", ["1e12", "1e300", "inf", "-inf", "nan", "0.1", "-1", "86401"]),
                             ("poll-interval", ["1e300", "inf", "nan", "0", "-1", "3601"]),
                             ("shutdown-grace", ["1e300", "inf", "nan", "-1", "86401"]))
      for value in values],
    ("worker-lease-not-a-number", ["worker", "--app", APP, "--lease", "soon"], DOWN, "not a number of seconds", 2,
     None),
    ("worker-concurrency", ["worker", "--app", APP, "--concurrency", "100000"], DOWN, "'--concurrency'", 2, None),
    ("worker-concurrency-0", ["worker", "--app", APP, "--concurrency", "0"], DOWN, "'--concurrency'", 2, None),
    ("worker-pool-size", ["worker", "--app", APP, "--pool-size", "1000000"], DOWN, "'--pool-size'", 2, None),
    # times at the ends of the supported range, once converted to UTC
    *[(f"enqueue-{option}-{value}", ["enqueue", "x", f"--{option}", value], DOWN, "outside the supported range",
       2, None)
      for option in ("run-at", "expires-at")
      for value in ("9999-12-31T23:00:00-05:00", "0001-01-01T01:00:00+05:00", "9999-12-31T23:59:59Z",
                    "0001-01-01T00:00:00Z", "9999-12-30T00:00:00+00:00")],
    ("enqueue-run-at-app", ["enqueue", "greet", "--app", APP, "--run-at", "0001-01-01T01:00:00+05:00"], DOWN,
     "outside the supported range", 2, None),
    ("enqueue-priority-high", ["enqueue", "x", "--priority", "32768"], DOWN, "'--priority'", 2, None),
    ("enqueue-priority-low", ["enqueue", "x", "--priority", "-32769"], DOWN, "'--priority'", 2, None),
    ("enqueue-max-attempts", ["enqueue", "x", "--max-attempts", str(MAX_ATTEMPTS + 1)], DOWN, "'--max-attempts'", 2,
     None),
    ("enqueue-max-attempts-0", ["enqueue", "x", "--max-attempts", "0"], DOWN, "'--max-attempts'", 2, None),
    ("unique-key-long", ["enqueue", "x", "--unique-key", "k" * (MAX_UNIQUE_KEY_BYTES + 1)], DOWN,
     f"over the limit of {MAX_UNIQUE_KEY_BYTES}", 2, None),
    ("unique-key-long-utf8", ["enqueue", "x", "--unique-key", "é" * (MAX_UNIQUE_KEY_BYTES // 2 + 1)], DOWN,
     f"over the limit of {MAX_UNIQUE_KEY_BYTES}", 2, None),
    ("unique-key-surrogate", ["enqueue", "x", "--unique-key", "a\udcffb"], DOWN, "lone surrogate", 2, None),
    ("unique-key-empty", ["enqueue", "x", "--unique-key", ""], DOWN, "must not be empty", 2, None),
    ("kind-surrogate", ["enqueue", "a\udcffb"], DOWN, "lone surrogate", 2, None),
    # payloads: too deep for the JSON parser (a usage error), or refused by the library (PayloadError)
    ("payload-too-deep-stdin", ["enqueue", "x", "--payload", "-"], DOWN, "nested deeper than 64 levels", 2,
     '{"a": ' + DEEP + "}"),
    ("payload-too-deep-app", ["enqueue", "greet", "--app", APP, "--payload", "-"], DOWN,
     "nested deeper than 64 levels", 2, DEEP),
    ("payload-deeper-than-64", ["enqueue", "x", "--payload", '{"a": ' + DEEPISH + "}"], "db",
     "nested deeper than 64 levels", (1, 2), None),
    ("payload-lone-surrogate", ["enqueue", "x", "--payload", '{"a": "\\ud800"}'], "db", "lone surrogate", (1, 2),
     None),
    ("payload-lone-surrogate-key", ["enqueue", "x", "--payload", '{"\\udfff": 1}'], "db", "invalid payload",
     (1, 2), None),
    ("payload-lone-surrogate-app", ["enqueue", "greet", "--app", APP, "--payload", '{"name": "\\ud800"}'], "db",
     "lone surrogate", (1, 2), None),
    ("payload-nul", ["enqueue", "x", "--payload", '{"a": "\\u0000"}'], "db", "NUL", (1, 2), None),
    # filters, reasons, ids
    ("list-kind-surrogate", ["jobs", "list", "--kind", "\udcff"], DOWN, "lone surrogate", 2, None),
    ("list-kind-long", ["jobs", "list", "--kind", "k" * 201], DOWN, "over the limit of 200", 2, None),
    ("list-shard-surrogate", ["jobs", "list", "--shard", "\udcff"], DOWN, "invalid shard name", 2, None),
    ("list-shard-invalid", ["jobs", "list", "--shard", "Bad Shard"], DOWN, "invalid shard name", 2, None),
    ("list-limit-huge", ["jobs", "list", "--limit", str(10**20)], DOWN, "'--limit'", 2, None),
    ("list-limit-0", ["jobs", "list", "--limit", "0"], DOWN, "'--limit'", 2, None),
    ("cancel-reason-surrogate", ["jobs", "cancel", "1", "--reason", "\udcff"], DOWN, "lone surrogate", 2, None),
    ("cancel-reason-long", ["jobs", "cancel", "1", "--reason", "r" * 8193], DOWN, "over the limit of 8192", 2,
     None),
    *[(f"{command}-id-{value}", ["jobs", command, "--", value], DOWN, "is not a job id", 2, None)
      for command in ("show", "retry", "cancel") for value in ("99999999999999999999999", "0", "-1")],
    # shards: names whose partition would take the name of finejobs' own relations
    ("shards-add-other", ["shards", "add", "other"], DOWN, "finejobs_jobs_other, is taken by the default partition",
     2, None),
    ("shards-add-other-among-others", ["shards", "add", "district-1", "other"], DOWN,
     "shard 'other' cannot have a partition of its own", 2, None),
    ("shards-add-pkey", ["shards", "add", "pkey"], DOWN, "cannot have a partition of its own", 2, None),
    ("shards-add-other-pkey", ["shards", "add", "other_pkey"], DOWN, "an index of the default partition", 2, None),
    ("shards-add-claim-idx", ["shards", "add", "claim_idx"], DOWN, "cannot have a partition of its own", 2, None),
    ("shards-move-wait", ["shards", "move", "x", "--to", "b", "--wait", "inf"], DOWN, "'--wait'", 2, None),
    ("shards-move-wait-huge", ["shards", "move", "x", "--to", "b", "--wait", "1e300"], DOWN, "'--wait'", 2, None),
    ("shards-move-batch", ["shards", "move", "x", "--to", "b", "--batch", "1000000000"], DOWN, "'--batch'", 2,
     None),
]


@pytest.fixture(scope="module")
def results(database_url: str) -> dict[str, Result]:
    """Every case, run concurrently (each is a CLI process that changes nothing)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case_id: pool.submit(run_cli, *args, url=database_url if url == "db" else url, stdin=stdin)
                   for case_id, args, url, _, _, stdin in CASES}
        return {case_id: future.result() for case_id, future in futures.items()}


@pytest.mark.parametrize(("case_id", "fragment", "code"), [(c[0], c[3], c[4]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_values_are_refused_in_one_line(case_id: str, fragment: str, code: int | tuple[int, ...],
                                            results: dict[str, Result]) -> None:
    result = results[case_id]
    assert_refused(result.code, result.stderr, result.stdout, fragment, code)


def test_other_is_still_a_shard_jobs_can_be_enqueued_to(database_url: str) -> None:
    job_id = run_cli("enqueue", "x", "--shard", "other", "--payload", "{}", url=database_url).ok().stdout.strip()
    listed = run_cli("jobs", "list", "--shard", "other", "--json", url=database_url).ok().json()
    assert [str(job["id"]) for job in listed] == [job_id]
    assert run_cli("jobs", "cancel", job_id, url=database_url).ok().stdout.strip() == f"job {job_id} is cancelled"


def test_the_worker_help_documents_the_bounds_of_its_durations() -> None:
    text = " ".join(run_cli("worker", "--help", url=None).ok().stdout.split())
    assert "at most 3600 (an hour)" in text  # --poll-interval
    assert "0 to 86400 (a day)" in text  # --shutdown-grace
    assert "0.5 to 86400 (a day)" in text  # --lease


# ---------------------------------------------------------------- NUL characters (in this process)

NUL_CASES = [
    ("list-kind", ["jobs", "list", "--kind", "a\x00b"], "kind must not contain NUL", 2),
    ("list-shard", ["jobs", "list", "--shard", "a\x00b"], "invalid shard name", 2),
    ("cancel-reason", ["jobs", "cancel", "1", "--reason", "a\x00b"], "reason must not contain NUL", 2),
    ("unique-key", ["enqueue", "x", "--unique-key", "a\x00b"], "unique_key must not contain NUL", 2),
    ("kind", ["enqueue", "a\x00b"], "must not contain NUL", 2),
    ("shard", ["enqueue", "x", "--shard", "a\x00b"], "invalid shard name", 2),
    ("shards-add", ["shards", "add", "a\x00b"], "invalid shard name", 2),
    ("worker-shard", ["worker", "--app", APP, "--shard", "a\x00b"], "invalid shard pattern", 2),
    ("database-url", ["--database-url", DOWN + "\x00b", "stats"], "database URL must not contain NUL", 1),
    ("database-url-command", ["stats", "--database-url", DOWN + "\x00b"], "database URL must not contain NUL", 1),
    ("shard-map", ["--shard-map", "a\x00b.toml", "stats"], "shard map path must not contain NUL", 1),
    ("app", ["enqueue", "x", "--app", "a\x00b"], "bad --app", 1),
]


@pytest.mark.parametrize(("args", "fragment", "code"), [c[1:] for c in NUL_CASES], ids=[c[0] for c in NUL_CASES])
def test_nul_characters_are_refused_in_one_line(args: list[str], fragment: str, code: int,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINEJOBS_DATABASE_URL", DOWN)
    monkeypatch.delenv("FINEJOBS_SHARD_MAP", raising=False)
    status = main(args)
    out = capsys.readouterr()
    assert_refused(status, out.err, out.out, fragment, code)
