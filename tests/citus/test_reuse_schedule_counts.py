"""tests/integration/test_schedule_counts.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_schedule_counts import *  # noqa: F403
