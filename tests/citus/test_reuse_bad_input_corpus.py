"""tests/integration/test_bad_input_corpus.py on Citus (tests/citus/conftest.py points its fixtures at the cluster)."""

from tests.integration.test_bad_input_corpus import *  # noqa: F403
