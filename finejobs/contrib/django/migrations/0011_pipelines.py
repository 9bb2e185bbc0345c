"""finejobs' SQL migration finejobs/migrations/0011_pipelines.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(11, "0010_groups")
