"""tests/integration/test_import.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_import import *  # noqa: F403

from .reuse import not_on_citus

not_on_citus(globals(), {"test_a_shard_partition_and_an_explicit_shard": "shard partitions are refused on Citus"})
