"""tests/integration/test_connection_loss.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_connection_loss import *  # noqa: F403
