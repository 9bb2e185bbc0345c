"""finejobs' SQL migration finejobs/migrations/0008_return_value.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(8, "0007_trace")
