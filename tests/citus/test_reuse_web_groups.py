"""tests/integration/test_web_groups.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_web_groups import *  # noqa: F403
