"""An app for the password tests: ``finejobs worker --app tests.acceptance.app_secrets:queue``.

The kind ``leak`` fails with an error that quotes the database URL it was given (as a careless handler's
connection error might): the worker's log line and ``jobs show`` must still not show the password.
"""

from __future__ import annotations

import os

import finejobs

queue = finejobs.Queue()


@queue.job("leak", retry=finejobs.Retry(max_attempts=1))
def leak(payload: dict[str, object]) -> None:
    url = os.environ.get("FINEJOBS_DATABASE_URL", "")
    raise ConnectionError(f"could not reach {url} (from {url})")


@queue.job("touch")
def touch(payload: dict[str, object]) -> None:
    """Succeeds at once."""
