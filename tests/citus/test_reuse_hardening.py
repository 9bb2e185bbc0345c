"""tests/integration/test_hardening.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_hardening import *  # noqa: F403
