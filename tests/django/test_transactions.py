"""Transactional enqueue: with the finejobs tables in the app's PostgreSQL database, the job row is written on
Django's own connection inside the caller's atomic block (it exists if and only if that commits); with them
elsewhere (another alias; or the app's data in SQLite), the job is written by transaction.on_commit."""

from __future__ import annotations

from typing import Any

import pytest
import tasks_for_tests as t
from conftest import truncate_finejobs
from django.db import connections, transaction
from test_backend import job_count

import finejobs
from finejobs.contrib.django.compat import TaskResultStatus, task_backends

ALL = ["default", "jobs", "legacy"]


class Rollback(Exception):
    pass


def test_the_job_is_written_in_the_callers_transaction(jobs_db: None) -> None:
    with transaction.atomic():
        result = t.add.enqueue(1, 2)
        assert result.id.isdigit()
        assert job_count() == 0, "another connection must not see it before the commit"
        with connections["default"].cursor() as cursor:  # Django's own connection sees it
            cursor.execute("SELECT count(*) FROM finejobs_jobs WHERE id = %s", [int(result.id)])
            assert cursor.fetchone() == (1,)
    assert job_count() == 1
    assert t.add.get_result(result.id).status == TaskResultStatus.READY


def test_a_rolled_back_transaction_leaves_no_job(jobs_db: None) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        t.add.enqueue(1, 2)
        raise Rollback
    assert job_count() == 0


def test_a_rolled_back_savepoint_takes_its_job_with_it(jobs_db: None) -> None:
    with transaction.atomic():
        kept = t.add.enqueue(1, 1)
        with pytest.raises(Rollback), transaction.atomic():
            t.add.enqueue(2, 2)
            raise Rollback
    assert job_count() == 1
    assert t.add.get_result(kept.id).args == [1, 1]


def test_outside_a_transaction_the_job_is_written_at_once(jobs_db: None) -> None:
    t.add.enqueue(1, 2)
    assert job_count() == 1


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_tables_on_another_alias_follow_the_app_transaction_on_commit(_finejobs_pools: None) -> None:
    truncate_finejobs("jobs")
    elsewhere = t.add.using(backend="elsewhere")
    with transaction.atomic():
        result = elsewhere.enqueue(3, 4)
        assert result.id == "" and result.status == TaskResultStatus.READY
        assert job_count("jobs") == 0
    assert result.id.isdigit() and result.enqueued_at is not None
    assert job_count("jobs") == 1
    assert task_backends["elsewhere"].get_result(result.id).args == [3, 4]
    with pytest.raises(Rollback), transaction.atomic():
        elsewhere.enqueue(5, 6)
        raise Rollback
    assert job_count("jobs") == 1
    elsewhere.enqueue(7, 8)  # no transaction on the app's database: at once
    assert job_count("jobs") == 2


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_the_app_in_sqlite_and_the_jobs_in_postgresql(_finejobs_pools: None) -> None:
    truncate_finejobs("jobs")
    on_sqlite = t.add.using(backend="sqlite_app")
    with pytest.raises(Rollback), transaction.atomic(using="legacy"):
        on_sqlite.enqueue(1, 2)
        raise Rollback
    assert job_count("jobs") == 0
    with transaction.atomic(using="legacy"):
        result = on_sqlite.enqueue(1, 2)
        assert result.id == ""
    assert job_count("jobs") == 1 and result.id.isdigit()


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_bad_arguments_are_refused_before_the_commit(_finejobs_pools: None) -> None:
    truncate_finejobs("jobs")
    with transaction.atomic():
        with pytest.raises(finejobs.PayloadError):
            t.echo.using(backend="elsewhere").enqueue("nul \x00")
        with pytest.raises(finejobs.PayloadError):
            t.echo.using(backend="elsewhere").enqueue(object())
    assert job_count("jobs") == 0


def test_the_backends_options_are_checked() -> None:
    from finejobs.contrib.django import FinejobsBackend
    from finejobs.contrib.django.compat import BackendConfigurationError

    def make(**options: Any) -> Any:
        return FinejobsBackend("bad", {"OPTIONS": options})

    for options, message in (({"NOPE": 1}, "unknown option"), ({"URL": "postgresql://x/y", "QUEUE": "a:b"}, "one of"),
                             ({"DATABASE": "missing"}, "not in DATABASES"), ({"POOL_SIZE": 0}, "POOL_SIZE"),
                             ({"QUEUE_SHARDS": {"q": "Bad Shard"}}, "QUEUE_SHARDS"), ({"RETRY": 3}, "RETRY"),
                             ({"URL": "postgresql://x/y", "DATABASE": "default"}, "give one")):
        with pytest.raises(BackendConfigurationError, match=message):
            make(**options)
    with pytest.raises(BackendConfigurationError, match="sqlite"):
        make(DATABASE="legacy").queue  # noqa: B018
    assert make(URL="postgresql://nobody@127.0.0.1:1/none").queue.url.endswith("/none")
