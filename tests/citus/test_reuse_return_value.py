"""tests/integration/test_return_value.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_return_value import *  # noqa: F403
