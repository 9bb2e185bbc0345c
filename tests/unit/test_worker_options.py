"""``finejobs worker`` offers every option of ``finejobs.Worker`` a deployment needs, under the same name; the
exceptions are listed here, each with its reason, so a new Worker option cannot be forgotten by the CLI."""

from __future__ import annotations

import inspect
import sys
from datetime import timedelta

import click
import pytest

from finejobs import JobState
from finejobs.cli.worker import Retention, child_args, worker
from finejobs.runtime import Worker

# Worker parameters the CLI does not offer, on purpose.
NOT_ON_THE_CLI = {
    "self": "not an option",
    "queue": "--app names the queue",
    "database": "chosen from --shard and the shard map (one worker per database)",
    "clock": "tests inject a clock; a deployment runs on the real one",
    "observers": "objects; --metrics-port attaches the Prometheus observer",
}
# CLI options that are not Worker parameters (they configure the process, the queue or the metrics).
CLI_ONLY = {"app", "pool_size", "log_level", "metrics_port", "metrics_host", "database_url",
            "processes"}  # --processes: how many worker processes the command runs (a supervisor's), not a Worker's


def test_every_worker_option_is_on_the_cli_or_listed_as_an_exception() -> None:
    worker_params = set(inspect.signature(Worker.__init__).parameters)
    cli_params = {p.name for p in worker.params if p.name is not None}
    missing = worker_params - set(NOT_ON_THE_CLI) - cli_params
    assert not missing, f"Worker options without a `finejobs worker` option: {sorted(missing)} (add one, or list " \
                        "it in NOT_ON_THE_CLI with the reason)"
    unknown = cli_params - CLI_ONLY - worker_params
    assert not unknown, f"`finejobs worker` options that are no Worker parameter: {sorted(unknown)}"
    stale = set(NOT_ON_THE_CLI) - worker_params - {"self"}
    assert not stale, f"NOT_ON_THE_CLI names what Worker no longer takes: {sorted(stale)}"
    assert not set(NOT_ON_THE_CLI) & cli_params, "an exception that the CLI offers after all"


def test_the_cli_defaults_are_the_workers() -> None:
    defaults = {name: p.default for name, p in inspect.signature(Worker.__init__).parameters.items()}
    for param in worker.params:
        if param.name in defaults and param.name not in ("shards", "lease", "retention"):
            assert param.default == defaults[param.name], f"--{param.name}: {param.default} vs {defaults[param.name]}"
    lease = next(p for p in worker.params if p.name == "lease")
    assert timedelta(seconds=lease.default) == defaults["lease"]  # type: ignore[arg-type]


def test_retention_parses_states_and_durations() -> None:
    parsed = Retention().convert("succeeded=7d, failed=30d,cancelled=1h30m", None, None)
    assert parsed == {JobState.SUCCEEDED: timedelta(days=7), JobState.FAILED: timedelta(days=30),
                      JobState.CANCELLED: timedelta(hours=1, minutes=30)}


@pytest.mark.parametrize(("value", "message"), [
    ("succeeded", "'succeeded' is not STATE=DURATION"),
    ("succeeded=", "is not STATE=DURATION"),
    ("running=1d", "'running' is not a final state"),
    ("sucess=1d", "'sucess' is not a final state (one of succeeded, failed, expired, cancelled)"),
    ("failed=7x", "'failed=7x': '7x' is not a duration"),
    ("failed=2mo", "months and years are not allowed"),
    ("failed=0s", "must be over 0"),
    ("failed=40000d", "at most 100 years"),
    ("failed=1d,failed=2d", "failed is named twice"),
    ("succeeded=1d,,failed=2d", "an empty entry"),
])
def test_retention_names_the_bad_entry(value: str, message: str) -> None:
    with pytest.raises(click.BadParameter) as raised:
        Retention().convert(value, None, None)
    assert message in str(raised.value.message)


def test_the_children_of_processes_get_the_same_options_their_own_id_and_port() -> None:
    args = ["--app", "m:queue", "--shard", "a", "--shard", "b-*", "--concurrency", "7", "--poll-interval", "0.25",
            "--no-scheduler", "--retention", "succeeded=7d,failed=1h30m", "--worker-id", "w", "--metrics-port", "9400",
            "--processes", "3", "--database-url", "postgresql://u:secret@h/db", "--log-level", "debug", "--lease", "2"]
    ctx = worker.make_context("worker", list(args))
    argv, env = child_args(ctx, 2)
    assert argv[:4] == [sys.executable, "-m", "finejobs", "worker"]
    again = worker.make_context("worker", argv[4:])
    assert again.params == dict(ctx.params, processes=1, worker_id="w:2", metrics_port=9401, database_url=None)
    assert env == {"FINEJOBS_DATABASE_URL": "postgresql://u:secret@h/db", "FINEJOBS_SHARD_MAP": ""}
    assert "secret" not in " ".join(argv)  # the URL goes by the environment, not the command line
    defaults = worker.make_context("worker", ["--app", "m:queue", "--processes", "2"])
    assert child_args(defaults, 1) == ([sys.executable, "-m", "finejobs", "worker", "--app", "m:queue"], {})
