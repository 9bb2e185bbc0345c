"""The management commands (a real worker process stopped by SIGTERM; the CLI passed through), the migrations
(finejobs' SQL migrations run by Django's, one per SQL file) and the console mounted in the ASGI app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from conftest import EXAMPLE, result_of
from django.core.management import call_command
from django.db import connections

from finejobs.contrib.django.commands import run_cli, strip_django_options
from finejobs.contrib.django.config import alias_url
from finejobs.store import available_migrations

MIGRATIONS = Path(__file__).resolve().parents[2] / "finejobs" / "contrib" / "django" / "migrations"


def test_the_worker_command_runs_tasks_and_stops_on_sigterm(jobs_db: None) -> None:
    from renewals.tasks import plan_renewals

    env = {**os.environ, "FINEJOBS_DATABASE_URL": alias_url("default"),
           "DJANGO_SETTINGS_MODULE": "renewals_site.settings", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "manage.py"), "finejobs_worker", "--concurrency", "2", "--poll-interval", "0.1",
         "--shutdown-grace", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        result = plan_renewals.enqueue()
        done = result_of(plan_renewals, result.id, timeout=30)
        assert done.status == "SUCCESSFUL" and done.return_value == {"queued": 0}
        assert done.attempts == 1
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"job {result.id} renewals.tasks.plan_renewals shard=default attempt=1/1 succeeded" in output, output
    assert "schedules declared in code, written: policy-renewals" in output
    assert "SIGTERM: stopping" in output and "stopped: claimed=1 succeeded=1" in output
    assert output.count("SIGTERM: stopping") == 1, "each line once"


def test_the_cli_passes_through(jobs_db: None, capsys: pytest.CaptureFixture[str]) -> None:
    import tasks_for_tests as t

    job = t.add.enqueue(1, 2)
    call_command("finejobs", "jobs", "show", job.id)
    shown = capsys.readouterr().out
    assert "tasks_for_tests.add" in shown and job.id in shown
    assert run_cli(["stats"]) == 0
    assert "available" in capsys.readouterr().out
    assert run_cli(["--help"], command=("worker",)) == 0
    assert "--concurrency" in capsys.readouterr().out
    assert run_cli(["jobs", "show", "999999"]) == 1
    assert "no job" in capsys.readouterr().err
    assert strip_django_options(["--settings", "x", "--pythonpath=y", "stats", "--json"]) == ["stats", "--json"]


def test_each_finejobs_sql_migration_has_a_django_migration() -> None:
    sql = [f"{m.version:04d}_{m.name}" for m in available_migrations()]
    django_ones = sorted(p.stem for p in MIGRATIONS.glob("[0-9]*.py"))
    assert django_ones == ["0001_initial", *sql[1:]]
    for name in django_ones[1:]:
        assert f"finejobs_migration({int(name[:4])}, " in (MIGRATIONS / f"{name}.py").read_text()


def test_migrate_made_the_finejobs_tables_and_makemigrations_sees_no_change(jobs_db: None, backend: Any) -> None:
    latest = available_migrations()[-1].version
    assert backend.queue.store.schema_version() == latest
    call_command("makemigrations", "finejobs", "--check", "--dry-run", verbosity=0)
    call_command("migrate", "finejobs", "zero", verbosity=0)  # finejobs' SQL is forward-only: the tables stay
    assert backend.queue.store.schema_version() == latest
    call_command("migrate", "finejobs", verbosity=0)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'finejobs'")
        assert cursor.fetchone() == (len(list(MIGRATIONS.glob("[0-9]*.py"))),)


def test_the_console_mounted_in_the_asgi_app(jobs_db: None) -> None:
    pytest.importorskip("fastapi")
    from django.core.asgi import get_asgi_application

    from finejobs.contrib.django.asgi import with_console

    app = with_console(get_asgi_application(), prefix="/jobs")

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get(path)

    assert async_to_sync(get)("/jobs").status_code == 307
    console = async_to_sync(get)("/jobs/api/v1/stats")
    assert console.status_code == 200 and "by_state" in console.json()
    assert async_to_sync(get)("/admin/login/").status_code == 200
