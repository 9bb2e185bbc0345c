"""finejobs' SQL migration finejobs/migrations/0006_operations.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(6, "0005_schedule_counts")
