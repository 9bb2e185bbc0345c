"""A small app for the shard acceptance tests: ``finejobs worker --app tests.acceptance.app_shards:queue``.

The Queue takes its URL from FINEJOBS_DATABASE_URL (the tests set it in the subprocess environment).
"""

from __future__ import annotations

import finejobs

queue = finejobs.Queue()


@queue.job("touch")
def touch(payload: dict[str, object]) -> None:
    """Succeeds at once, whatever its shard."""
