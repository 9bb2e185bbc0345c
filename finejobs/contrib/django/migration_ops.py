"""The operation of the app's Django migrations: each runs finejobs' own SQL migrations up to its version
(finejobs/migrations/NNNN_*.sql: one source of truth) on the databases of the finejobs backends that live
in the database being migrated.

Which backends a ``migrate --database ALIAS`` covers: those whose OPTIONS 'DATABASE' is ALIAS, and those whose
tables are elsewhere (URL, SHARD_MAP, QUEUE without DATABASE) when ALIAS is their APP_DATABASE. finejobs' SQL
migrations are forward-only: migrating this app backwards records it in Django and leaves the tables as they
are (drop them by hand if you must)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from finejobs.contrib.django.compat import task_backends
from finejobs.queue import Queue


def queues_in(alias: str) -> list[Queue]:
    """The finejobs queues whose tables a migration of Django database ``alias`` must create or upgrade."""
    from finejobs.contrib.django.backend import FinejobsBackend

    found: list[Queue] = []
    for name in task_backends.settings:
        backend = task_backends[name]
        if not isinstance(backend, FinejobsBackend):
            continue
        options = backend.settings
        home = options.database if options.database is not None else options.app_database
        if home == alias and not any(backend.queue is q for q in found):
            found.append(backend.queue)
    return found


def run_finejobs_sql(version: int) -> Any:
    """A RunPython operation that applies finejobs' SQL migrations up to ``version`` (reverse: nothing)."""
    def forward(apps: Any, schema_editor: Any) -> None:
        for queue in queues_in(schema_editor.connection.alias):
            for database in queue.databases:
                queue.store_of(database).migrate(target=version)

    forward.__name__ = f"finejobs_sql_{version:04d}"
    return migrations.RunPython(forward, migrations.RunPython.noop, elidable=False)


def finejobs_migration(version: int, previous: str | None) -> type[Any]:
    """The Migration class of one finejobs SQL migration (the app's migrations are one line each)."""
    attrs = {"dependencies": [("finejobs", previous)] if previous else [],
             "operations": [run_finejobs_sql(version)]}
    return type("Migration", (migrations.Migration,), attrs)
