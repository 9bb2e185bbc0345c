"""tests/integration/test_maintenance_lock.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_maintenance_lock import *  # noqa: F403
