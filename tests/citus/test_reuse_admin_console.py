"""tests/integration/test_admin_console.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_admin_console import *  # noqa: F403
