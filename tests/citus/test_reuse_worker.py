"""tests/integration/test_worker.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_worker import *  # noqa: F403
