"""tests/integration/test_scheduler.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_scheduler import *  # noqa: F403
