"""tests/integration/test_web_pages.py on Citus: the console pages and REST API over the cluster."""

from tests.integration.test_web_pages import *  # noqa: F403
