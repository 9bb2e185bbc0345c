"""tests/integration/test_web_api.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_web_api import *  # noqa: F403
