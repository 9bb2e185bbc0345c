"""The Django app ``finejobs.contrib.django`` (label ``finejobs``): its migrations create and upgrade the
finejobs tables, its admin shows jobs, schedules, kinds, shards and workers, and its management commands run
workers (``finejobs_worker``) and the finejobs CLI (``finejobs``)."""

from __future__ import annotations

from django.apps import AppConfig


class FinejobsConfig(AppConfig):  # type: ignore[misc]
    name = "finejobs.contrib.django"
    label = "finejobs"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"
