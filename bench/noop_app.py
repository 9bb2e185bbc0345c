"""The app the benchmark's worker processes serve: one no-op job kind."""

from __future__ import annotations

from pydantic import BaseModel

import finejobs

queue = finejobs.Queue()  # FINEJOBS_DATABASE_URL


class Noop(BaseModel):
    n: int


@queue.job("noop", retry=finejobs.Retry(max_attempts=1))
def noop(payload: Noop) -> None:
    return None
