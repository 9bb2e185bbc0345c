"""tests/integration/test_routing.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_routing import *  # noqa: F403
