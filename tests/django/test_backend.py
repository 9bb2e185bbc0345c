"""The django.tasks backend contract, on a real PostgreSQL with real finejobs workers: enqueue, defer, priority,
async tasks, get_result / aget_result, errors (class and traceback), return values, JSON arguments, and
finejobs' own options (retries, expiry, unique keys, shards, timeouts)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import tasks_for_tests as t
from asgiref.sync import async_to_sync
from conftest import result_of, wait_until
from django.utils import timezone

import finejobs
from finejobs.contrib.django import FinejobsTask, JobCancelled, JobExpired
from finejobs.contrib.django.compat import (
    FRAMEWORK,
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from finejobs.contrib.django.config import alias_url
from finejobs.store import libpq_url


def job_count(alias: str = "default") -> int:
    with psycopg.connect(libpq_url(alias_url(alias))) as conn:
        row = conn.execute("SELECT count(*) FROM finejobs_jobs").fetchone()
    assert row is not None
    return int(row[0])


def test_the_backend_supports_everything(backend: Any) -> None:
    assert (backend.supports_defer, backend.supports_priority, backend.supports_async_task,
            backend.supports_get_result) == (True, True, True, True)
    assert isinstance(t.add, FinejobsTask)
    assert t.add.module_path in backend.queue.kinds


def test_enqueue_run_and_get_the_result(worker: Any) -> None:
    result = t.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY and result.id.isdigit()
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    done = result_of(t.add, result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.attempts == 1 and done.errors == []
    assert done.enqueued_at <= done.started_at <= done.finished_at
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5


def test_none_and_json_return_values(worker: Any) -> None:
    assert result_of(t.nothing, t.nothing.enqueue().id).return_value is None
    done = result_of(t.echo, t.echo.enqueue((1, "two"), label="x").id)
    assert done.return_value == {"value": [1, "two"], "label": "x"}


def test_a_deferred_task_waits_for_run_after(worker: Any) -> None:
    later = timezone.now() + timedelta(seconds=1)
    result = t.add.using(run_after=later).enqueue(1, 1)
    time.sleep(0.5)
    assert t.add.get_result(result.id).status == TaskResultStatus.READY
    done = result_of(t.add, result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.started_at >= later


def test_higher_priority_runs_first(jobs_db: None, backend: Any) -> None:
    t.RAN.clear()
    low = [t.echo.using(priority=-5).enqueue(i, label="low") for i in range(3)]
    high = t.echo.using(priority=50).enqueue(0, label="high")
    runner = backend.queue.worker(concurrency=1, claim_batch=1, poll_interval=0.05, run_scheduler=False,
                                  register=False).start()
    try:
        result_of(t.echo, low[-1].id)
        result_of(t.echo, high.id)
    finally:
        runner.stop(timeout=10)
    assert [label for _, label in t.RAN] == ["high", "low", "low", "low"]


def test_async_tasks_run_on_the_event_loop(worker: Any) -> None:
    result = async_to_sync(t.async_add.aenqueue)(20, 22)
    done = result_of(t.async_add, result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == 42
    again = async_to_sync(t.async_add.aget_result)(result.id)
    assert again.return_value == 42


def test_errors_carry_the_exception_class_and_traceback(worker: Any) -> None:
    done = result_of(t.fails, t.fails.enqueue("boom").id)
    assert done.status == TaskResultStatus.FAILED
    [error] = done.errors
    assert error.exception_class is ValueError
    assert "ValueError: boom" in error.traceback and "tasks_for_tests.py" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        done.return_value  # noqa: B018
    custom = result_of(t.fails_custom, t.fails_custom.enqueue().id)
    assert custom.errors[0].exception_class_path == "tasks_for_tests.Custom"
    assert custom.errors[0].exception_class is t.Custom


def test_a_return_value_that_is_not_json_fails_the_task(worker: Any) -> None:
    done = result_of(t.returns_object, t.returns_object.enqueue().id)
    assert done.status == TaskResultStatus.FAILED
    assert done.errors[0].exception_class is TypeError


def test_arguments_must_be_json_and_nothing_is_written(jobs_db: None) -> None:
    with pytest.raises(finejobs.PayloadError) as err:
        t.echo.enqueue(object(), label={1, 2})
    assert err.value.fields == ["args.0", "kwargs.label"]
    assert "task arguments must be JSON" in str(err.value)
    with pytest.raises(finejobs.PayloadError, match="NUL"):
        t.echo.enqueue("nul \x00")
    with pytest.raises(finejobs.PayloadError):
        t.echo.enqueue(float("nan"))
    assert job_count() == 0


def test_get_result_of_what_is_not_a_task_result(jobs_db: None, backend: Any) -> None:
    for bad in ("123456", "abc", "-1", "", "9" * 30):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(bad)

    @backend.queue.job("plain.finejobs.kind")
    def plain(payload: dict[str, Any]) -> None:
        pass

    try:
        job = plain.enqueue({})
        with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
            backend.get_result(str(job.id))
    finally:
        del backend.queue.kinds["plain.finejobs.kind"]
    result = t.add.enqueue(1, 2)
    from finejobs.contrib.django.compat import _exceptions

    with pytest.raises(_exceptions.TaskResultMismatch):
        t.echo.get_result(result.id)


def test_retries_by_the_tasks_policy_with_the_context(worker: Any) -> None:
    done = result_of(t.flaky, t.flaky.enqueue(2).id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == {"attempt": 2, "result_id": done.id}
    assert done.attempts == 2 and len(done.worker_ids) == 2
    assert [e.exception_class for e in done.errors] == [ConnectionError]
    out_of_attempts = result_of(t.flaky, t.flaky.enqueue(9).id)
    assert out_of_attempts.status == TaskResultStatus.FAILED and len(out_of_attempts.errors) == 3


def test_a_task_not_started_in_time_expires(jobs_db: None, backend: Any) -> None:
    result = t.once.enqueue("late")
    time.sleep(1.1)
    runner = backend.queue.worker(poll_interval=0.05, run_scheduler=False, register=False).start()
    try:
        done = result_of(t.once, result.id)
    finally:
        runner.stop(timeout=10)
    assert done.status == TaskResultStatus.FAILED
    assert done.errors[-1].exception_class is JobExpired


def test_a_cancelled_task_is_failed_with_job_cancelled(jobs_db: None, backend: Any) -> None:
    result = t.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
    finejobs.Admin(backend.queue, actor="test").cancel(int(result.id))
    done = t.add.get_result(result.id)
    assert done.status == TaskResultStatus.FAILED and done.errors[-1].exception_class is JobCancelled


def test_an_async_task_past_its_timeout_fails(worker: Any) -> None:
    done = result_of(t.slow, t.slow.enqueue().id)
    assert done.status == TaskResultStatus.FAILED
    assert issubclass(done.errors[0].exception_class, TimeoutError)


def test_unique_keys_and_shards(jobs_db: None, backend: Any) -> None:
    first, second = t.once.enqueue("k"), t.once.enqueue("k")
    assert first.id == second.id
    assert t.once.enqueue("other").id != first.id
    result = t.by_district.enqueue(3, note="x")
    assert backend.queue.get(int(result.id)).shard == "district-3"
    assert backend.queue.get(int(t.add.enqueue(1, 1).id)).shard == "default"
    assert backend.queue.get(int(t.add.using(shard="elsewhere-1").enqueue(1, 1).id)).shard == "elsewhere-1"


def test_bad_task_options_are_refused(jobs_db: None) -> None:
    with pytest.raises(InvalidTask, match="not valid"):
        t.add.using(queue_name="nope")
    with pytest.raises(InvalidTask, match="retry"):
        t.add.__class__(func=t.add.func, priority=0, backend="default", queue_name="default", run_after=None,
                        retry="3 times")
    with pytest.raises(InvalidTask, match="expires_in"):
        t.add.__class__(func=t.add.func, priority=0, backend="default", queue_name="default", run_after=None,
                        expires_in=timedelta(seconds=-1))
    with pytest.raises(InvalidTask, match="shard"):
        t.add.using(shard="Not A Shard!")
    with pytest.raises(InvalidTask, match="priority"):
        t.add.using(priority=1000)
    with pytest.raises(InvalidTask, match="aware"):
        t.add.using(run_after=timezone.now().replace(tzinfo=None))
    with pytest.raises(finejobs.InvalidJobOptions, match="expires_at"):
        t.add.using(expires_at=timezone.now() - timedelta(hours=1)).enqueue(1, 2)
    assert job_count() == 0


def test_the_tasks_signals_are_sent(worker: Any) -> None:
    seen: list[tuple[str, Any]] = []

    def note(name: str) -> Any:
        def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((name, task_result.status))
        return receiver

    receivers = [(task_enqueued, note("enqueued")), (task_started, note("started")), (task_finished, note("finished"))]
    for signal, receiver in receivers:
        signal.connect(receiver)
    try:
        result_of(t.add, t.add.enqueue(1, 2).id)
        wait_until(lambda: len(seen) >= 3, what="three signals")
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)
    assert seen == [("enqueued", TaskResultStatus.READY), ("started", TaskResultStatus.RUNNING),
                    ("finished", TaskResultStatus.SUCCESSFUL)]


def test_djangos_own_decorator_passes_finejobs_options_where_it_can(jobs_db: None) -> None:
    """Django 6.1 and the backport forward @task's extra arguments to the backend's task class; Django 6.0 does
    not (finejobs.contrib.django.task does on every version)."""
    import django

    from finejobs.contrib.django.compat import tasks

    forwards = FRAMEWORK == "django_tasks" or django.VERSION >= (6, 1)
    if not forwards:
        with pytest.raises(TypeError):
            tasks.task(retry=finejobs.Retry(max_attempts=2))(t.add.func)
        return
    made = tasks.task(retry=finejobs.Retry(max_attempts=2))(t.echo.func)
    assert isinstance(made, FinejobsTask) and made.retry == finejobs.Retry(max_attempts=2)
