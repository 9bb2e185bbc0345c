"""finejobs' SQL migration finejobs/migrations/0010_groups.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(10, "0009_schedule_runs")
