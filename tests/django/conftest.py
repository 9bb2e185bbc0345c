"""The Django integration's tests: pytest-django on the example project's test settings
(examples/django_renewals/renewals_site/test_settings.py), test databases of their own on the real server,
finejobs workers in threads. Without Django (or pytest-django) every module here is reported as skipped.

Django 5.2 with the django-tasks backport runs them in the main .venv (the README's test command); .ci/django
runs them again under Django 6.0.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_renewals"

try:
    import django
    import pytest_django  # noqa: F401
except ImportError:
    django = None  # type: ignore[assignment]


class _NoDjango(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield _NoDjangoItem.from_parent(self, name="needs-django")


class _NoDjangoItem(pytest.Item):
    def runtest(self) -> None:
        pytest.skip("Django and pytest-django are not installed (pip install -e '.[test]')")

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, "needs Django"


if django is None:
    def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.File:
        return _NoDjango.from_parent(parent, path=module_path)
else:
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renewals_site.test_settings")
    django.setup()


FINEJOBS_TABLES = ("finejobs_jobs, finejobs_schedules, finejobs_shard_moves, finejobs_pauses, finejobs_workers, "
                   "finejobs_audit")


def wait_until(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def truncate_finejobs(alias: str) -> None:
    """Empty finejobs' tables in a test database (Django's flush knows only its models' tables)."""
    import psycopg

    from finejobs.contrib.django.config import alias_url
    from finejobs.store import libpq_url

    with psycopg.connect(libpq_url(alias_url(alias)), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {FINEJOBS_TABLES} RESTART IDENTITY")


@pytest.fixture(scope="session")
def _finejobs_pools(django_db_setup: None) -> Iterator[None]:
    """The queues' connection pools closed before the test databases are dropped."""
    yield
    from finejobs.contrib.django.config import close_queues

    close_queues()


@pytest.fixture
def jobs_db(_finejobs_pools: None, transactional_db: None) -> Iterator[None]:
    """Committed transactions (workers in other threads see them), and no finejobs rows left from before."""
    truncate_finejobs("default")
    yield


@pytest.fixture
def backend() -> Any:
    from finejobs.contrib.django.compat import task_backends

    return task_backends["default"]


@pytest.fixture
def worker(jobs_db: None, backend: Any) -> Iterator[Any]:
    """A finejobs worker in a thread, serving the default backend's queue."""
    import tasks_for_tests  # noqa: F401  (declares the test tasks)

    runner = backend.queue.worker(concurrency=4, poll_interval=0.05, run_scheduler=False, shutdown_grace=2.0,
                                  register=False)
    runner.start()
    yield runner
    runner.stop(timeout=10)


def result_of(task: Any, result_id: str, *, finished: bool = True, timeout: float = 15.0) -> Any:
    """The task's result once it is finished (or, with finished=False, once it is no longer READY)."""
    def ready() -> Any:
        found = task.get_result(result_id)
        return found if (found.is_finished if finished else found.status != "READY") else None

    return wait_until(ready, timeout, f"task result {result_id}")
