"""The app of the ``finejobs worker --processes`` tests: a job that says which process ran it.

``whoami`` returns "PID WORKER_ID" (stored as the job's result) after sleeping ``seconds``, so a test can
tell the worker processes apart and have jobs running when it signals the supervisor.
"""

from __future__ import annotations

import os
import time

import pydantic

import finejobs

queue = finejobs.Queue()  # FINEJOBS_DATABASE_URL


class Who(pydantic.BaseModel):
    seconds: float = 0.0


@queue.job("whoami", retry=finejobs.Retry(max_attempts=3))
def whoami(payload: Who, ctx: finejobs.JobContext) -> str:
    time.sleep(payload.seconds)
    return f"{os.getpid()} {ctx.worker_id}"
