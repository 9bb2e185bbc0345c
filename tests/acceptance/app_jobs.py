"""A small finejobs app for the acceptance tests: ``finejobs worker --app tests.acceptance.app_jobs:queue``.

The Queue takes its URL from FINEJOBS_DATABASE_URL (the tests set it in the subprocess environment).
"""

from __future__ import annotations

import time

import pydantic

import finejobs


class Greeting(pydantic.BaseModel):
    name: str
    times: int = 1


class Nap(pydantic.BaseModel):
    seconds: float


queue = finejobs.Queue()


@queue.job("greet")
def greet(payload: Greeting) -> None:
    """Succeeds at once."""
    _ = payload.name * payload.times


@queue.job("nap")
def nap(payload: Nap) -> None:
    """Sleeps ``seconds``: a job that is still running when the worker is told to stop."""
    time.sleep(payload.seconds)


@queue.job("explode", retry=finejobs.Retry(max_attempts=1))
def explode(payload: dict[str, object]) -> None:
    """Always fails, and is not retried."""
    raise RuntimeError(f"boom: {payload.get('why', 'no reason')}")


@queue.job("die", retry=finejobs.Retry(max_attempts=2))
def die(payload: dict[str, object]) -> None:
    """Kills its own worker process, as a segfaulting C extension or os._exit in a library would."""
    import os

    os._exit(3)
