"""No tables of their own: these unmanaged models give the admin its pages (URLs, the index, LogEntry's
content types) and Django its permissions, ``finejobs.view_job`` / ``finejobs.change_job`` and so on. Every
read and action of those pages goes through the operations API (finejobs.Admin), never through the ORM."""

from __future__ import annotations

from django.db import models


class Job(models.Model):  # type: ignore[misc]
    id = models.BigIntegerField(primary_key=True)

    class Meta:
        managed = False
        db_table = "finejobs_admin_job"
        default_permissions = ("view", "change")
        verbose_name = "job"
        verbose_name_plural = "jobs"

    def __str__(self) -> str:
        return f"job {self.id}"


class Schedule(models.Model):  # type: ignore[misc]
    name = models.CharField(max_length=200, primary_key=True)

    class Meta:
        managed = False
        db_table = "finejobs_admin_schedule"
        default_permissions = ("view", "change")
        verbose_name = "schedule"
        verbose_name_plural = "schedules"

    def __str__(self) -> str:
        return f"schedule {self.name}"


class Kind(models.Model):  # type: ignore[misc]
    name = models.CharField(max_length=200, primary_key=True)

    class Meta:
        managed = False
        db_table = "finejobs_admin_kind"
        default_permissions = ("view", "change")
        verbose_name = "job kind"
        verbose_name_plural = "job kinds"

    def __str__(self) -> str:
        return f"kind {self.name}"


class Shard(models.Model):  # type: ignore[misc]
    name = models.CharField(max_length=63, primary_key=True)

    class Meta:
        managed = False
        db_table = "finejobs_admin_shard"
        default_permissions = ("view", "change")
        verbose_name = "shard"
        verbose_name_plural = "shards"

    def __str__(self) -> str:
        return f"shard {self.name}"


class Worker(models.Model):  # type: ignore[misc]
    id = models.CharField(max_length=200, primary_key=True)

    class Meta:
        managed = False
        db_table = "finejobs_admin_worker"
        default_permissions = ("view",)
        verbose_name = "worker"
        verbose_name_plural = "workers"

    def __str__(self) -> str:
        return f"worker {self.id}"
