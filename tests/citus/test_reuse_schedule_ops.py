"""tests/integration/test_schedule_ops.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_schedule_ops import *  # noqa: F403
