"""tests/integration/test_crash.py's checker tests (on made-up records). Its crash run makes a database of its own
with devdb, without the citus extension: test_citus_crash.py runs that suite on Citus instead."""

from tests.integration.test_crash import *  # noqa: F403

from .reuse import not_on_citus

not_on_citus(globals(), {"test_killed_workers_lose_no_job_and_no_job_runs_twice_at_once":
                         "its database is made without the citus extension: see test_citus_crash.py"})
