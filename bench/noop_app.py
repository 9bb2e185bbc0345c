"""The app the benchmark's worker processes serve: a no-op job kind, sync and async."""

from __future__ import annotations

from pydantic import BaseModel

import finejobs

queue = finejobs.Queue()  # FINEJOBS_DATABASE_URL


class Noop(BaseModel):
    n: int


@queue.job("noop", retry=finejobs.Retry(max_attempts=1))
def noop(payload: Noop) -> None:
    return None


@queue.job("noop_async", retry=finejobs.Retry(max_attempts=1))
async def noop_async(payload: Noop) -> None:
    return None
