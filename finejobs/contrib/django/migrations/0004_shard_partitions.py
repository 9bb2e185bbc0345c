"""finejobs' SQL migration finejobs/migrations/0004_shard_partitions.sql (forward only)."""

from finejobs.contrib.django.migration_ops import finejobs_migration

Migration = finejobs_migration(4, "0003_claims")
