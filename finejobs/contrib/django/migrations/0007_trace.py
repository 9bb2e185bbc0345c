"""finejobs' SQL migration finejobs/migrations/0007_trace.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(7, "0006_operations")
