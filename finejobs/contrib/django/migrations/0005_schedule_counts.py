"""finejobs' SQL migration finejobs/migrations/0005_schedule_counts.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(5, "0004_shard_partitions")
