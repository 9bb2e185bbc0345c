"""tests/integration/test_supervisor.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_supervisor import *  # noqa: F403
