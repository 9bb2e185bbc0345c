"""finejobs' SQL migration finejobs/migrations/0003_claims.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(3, "0002_schedules")
