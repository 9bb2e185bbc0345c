"""tests/integration/test_scheduler_batches.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_scheduler_batches import *  # noqa: F403
