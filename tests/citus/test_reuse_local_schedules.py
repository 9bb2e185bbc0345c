"""tests/integration/test_local_schedules.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_local_schedules import *  # noqa: F403
