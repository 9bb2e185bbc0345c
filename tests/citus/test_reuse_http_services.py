"""tests/integration/test_http_services.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_http_services import *  # noqa: F403
