"""The admin's models (no tables: managed=False) and finejobs' SQL migration 0001."""

from typing import Any

from django.db import migrations, models

from finejobs.contrib.django.migration_ops import run_finejobs_sql


def _model(name: str, key: str, field: Any, verbose: str, plural: str, permissions: tuple[str, ...]) -> Any:
    return migrations.CreateModel(
        name=name,
        fields=[(key, field)],
        options={"verbose_name": verbose, "verbose_name_plural": plural, "db_table": f"finejobs_admin_{name.lower()}",
                 "managed": False, "default_permissions": permissions},
    )


class Migration(migrations.Migration):  # type: ignore[misc]
    initial = True
    dependencies: list[tuple[str, str]] = []  # noqa: RUF012
    operations = [  # noqa: RUF012
        _model("Job", "id", models.BigIntegerField(primary_key=True, serialize=False), "job", "jobs",
               ("view", "change")),
        _model("Schedule", "name", models.CharField(max_length=200, primary_key=True, serialize=False),
               "schedule", "schedules", ("view", "change")),
        _model("Kind", "name", models.CharField(max_length=200, primary_key=True, serialize=False),
               "job kind", "job kinds", ("view", "change")),
        _model("Shard", "name", models.CharField(max_length=63, primary_key=True, serialize=False),
               "shard", "shards", ("view", "change")),
        _model("Worker", "id", models.CharField(max_length=200, primary_key=True, serialize=False),
               "worker", "workers", ("view",)),
        run_finejobs_sql(1),
    ]
