"""finejobs' SQL migration finejobs/migrations/0002_schedules.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(2, "0001_initial")
