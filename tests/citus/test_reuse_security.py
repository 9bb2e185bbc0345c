"""tests/integration/test_security.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_security import *  # noqa: F403
