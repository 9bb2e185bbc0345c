"""tests/integration/test_enqueue.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_enqueue import *  # noqa: F403
