"""tests/integration/test_control.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_control import *  # noqa: F403
