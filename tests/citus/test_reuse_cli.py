"""tests/acceptance/test_cli.py on Citus: the real CLI in subprocesses (migrate, enqueue, worker, jobs list /
show / retry / cancel, stats ...) against the cluster (tests/citus/conftest.py points the fixtures at it)."""

from tests.acceptance.conftest import jobdb, start_worker  # noqa: F401
from tests.acceptance.test_cli import *  # noqa: F403
