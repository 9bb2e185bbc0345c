"""tests/integration/test_database_faults.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_database_faults import *  # noqa: F403
