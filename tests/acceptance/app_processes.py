"""The app of the ``finejobs worker --processes`` tests: a job that says which process ran it.

``whoami`` returns "PID WORKER_ID" (stored as the job's result) after sleeping ``seconds``, so a test can
tell the worker processes apart and have jobs running when it signals the supervisor. With
``WHOAMI_STARTED_DIR`` set, each run first makes a file named by its job id there: the test's sign that the
handler itself started (a job the database shows running may be claimed and not yet handed to a thread).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pydantic

import finejobs

queue = finejobs.Queue()  # FINEJOBS_DATABASE_URL


class Who(pydantic.BaseModel):
    seconds: float = 0.0


@queue.job("whoami", retry=finejobs.Retry(max_attempts=3))
def whoami(payload: Who, ctx: finejobs.JobContext) -> str:
    if started := os.environ.get("WHOAMI_STARTED_DIR"):
        (Path(started) / str(ctx.job.id)).touch()
    time.sleep(payload.seconds)
    return f"{os.getpid()} {ctx.worker_id}"
