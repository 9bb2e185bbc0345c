"""Acceptance: ``finejobs worker --metrics-port N`` serves the worker's Prometheus metrics over HTTP; bad
values are refused before anything starts."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import finejobs
from finejobs.cli import main

from .helpers import APP, Db, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enqueue(url: str) -> None:
    """Three greet jobs and one explode job (one attempt, as the app declares it), from this process."""
    queue = finejobs.Queue(url)

    @queue.job("greet")
    def greet(payload: dict[str, Any]) -> None:  # never run here
        raise AssertionError("not run in the test process")

    @queue.job("explode", retry=finejobs.Retry(max_attempts=1))
    def explode(payload: dict[str, Any]) -> None:
        raise AssertionError("not run in the test process")

    try:
        greet.enqueue_many([{"name": f"n{i}"} for i in range(3)])
        explode.enqueue({"why": "test"})
    finally:
        queue.close()


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_worker_serves_its_metrics(jobdb: Db, start_worker: Any) -> None:
    port = free_port()
    worker = start_worker("--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    assert f"metrics at {url}" in worker.log
    enqueue(jobdb.url)
    wait_for(lambda: len(jobdb.states()) == 4 and set(jobdb.states().values()) == {"succeeded", "failed"},
             what="every job to finish", context=worker.describe)

    def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        found = samples(url)  # the outcome is counted once written: a moment after the row changed
        key = ("finejobs_worker_job_outcomes_total", frozenset({("kind", "explode"), ("outcome", "failed")}))
        return found if found.get(key) == 1 else None

    found = wait_for(counted, timeout=10, what="the outcomes to be counted", context=worker.describe)
    assert found[("finejobs_worker_jobs_claimed_total", frozenset({("kind", "greet")}))] == 3
    assert found[("finejobs_worker_jobs_claimed_total", frozenset({("kind", "explode")}))] == 1
    assert found[("finejobs_worker_job_outcomes_total", frozenset({("kind", "greet"), ("outcome", "succeeded")}))] == 3
    assert found[("finejobs_job_duration_seconds_count", frozenset({("kind", "greet"), ("outcome", "succeeded")}))] == 3
    (in_flight,) = [v for (name, _), v in found.items() if name == "finejobs_worker_in_flight"]
    assert in_flight == 0
    assert worker.terminate() == 0
    assert worker.stderr == ""
    with pytest.raises(httpx.ConnectError):  # the server stopped with the worker
        httpx.get(url, timeout=2)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--metrics-port", "0"], "Invalid value for '--metrics-port'"),
    (["--metrics-port", "65536"], "Invalid value for '--metrics-port'"),
    (["--metrics-port", "http"], "Invalid value for '--metrics-port'"),
    (["--metrics-host", "0.0.0.0"], "--metrics-host needs --metrics-port"),
])
def test_worker_refuses_bad_metrics_options(args: list[str], fragment: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["worker", "--app", APP, "--database-url", "postgresql://postgres@127.0.0.1:1/x", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("finejobs: error: ") and fragment in err, err
