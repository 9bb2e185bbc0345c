"""tests/integration/test_web_pipelines.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_web_pipelines import *  # noqa: F403
