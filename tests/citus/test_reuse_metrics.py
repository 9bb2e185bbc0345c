"""tests/integration/test_metrics.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_metrics import *  # noqa: F403
