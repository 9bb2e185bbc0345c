"""tests/integration/test_schema.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_schema import *  # noqa: F403
