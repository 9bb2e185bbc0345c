"""finejobs' SQL migration finejobs/migrations/0009_schedule_runs.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(9, "0008_return_value")
