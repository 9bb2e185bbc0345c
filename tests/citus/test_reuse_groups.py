"""tests/integration/test_groups.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_groups import *  # noqa: F403
