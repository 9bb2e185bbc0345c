"""tests/integration/test_state_machine.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_state_machine import *  # noqa: F403
