"""tests/integration/test_tracing.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_tracing import *  # noqa: F403

from .reuse import not_on_citus

not_on_citus(globals(), {"test_a_new_shard_partition_keeps_the_stored_context":
                         "it adds a shard partition, refused on Citus"})
