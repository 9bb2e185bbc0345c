"""A finejobs job as a Django ``TaskResult``: status, times, arguments, errors, workers, return value.

| finejobs state          | TaskResult.status | errors                                              |
| ----------------------- | ----------------- | --------------------------------------------------- |
| scheduled, available    | READY             | those of earlier attempts (a retry is READY again)  |
| running                 | RUNNING           | those of earlier attempts                           |
| succeeded               | SUCCESSFUL        | those of earlier attempts; ``return_value`` is kept |
| failed                  | FAILED            | one per failed attempt, the last one's class last   |
| expired                 | FAILED            | the last is ``JobExpired`` (not started in time)    |
| cancelled               | FAILED            | the last is ``JobCancelled`` (operator or handler)  |
"""

from __future__ import annotations

import re
from typing import Any

from finejobs.contrib.django.compat import TaskError, TaskResult, TaskResultStatus
from finejobs.jobs import AttemptError, Job, JobState


class JobExpired(Exception):
    """The job was not started before its ``expires_at`` (or a retry would have started after it)."""


class JobCancelled(Exception):
    """The job was cancelled: by an operator (the admin, the CLI, the console) or by ``finejobs.Cancel``."""


class WorkerLost(Exception):
    """The worker running the attempt died or hung: its lease ran out and the attempt was counted."""


class WorkerShutdown(Exception):
    """The worker stopped (SIGTERM) before the attempt finished, and gave the job back."""


class Unrunnable(Exception):
    """The job could not be run at all (its task could not be imported, its arguments could not be read)."""


# What finejobs itself writes as an attempt's error (no Python exception behind it, or finejobs' own).
_MADE_BY_FINEJOBS = {"Expired": JobExpired, "Cancelled": JobCancelled, "Cancel": JobCancelled,
                     "LeaseExpired": WorkerLost, "WorkerShutdown": WorkerShutdown, "Unrunnable": Unrunnable}

STATUS = {
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.AVAILABLE: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.EXPIRED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}

UNKNOWN_WORKER = "unknown"


def class_path(error: AttemptError) -> str:
    """The dotted path of the exception class of an attempt's error, for ``TaskError.exception_class_path``.

    finejobs records the class's qualified name; the module comes from the traceback's own line for the
    exception (``module.Class: message``, as Python prints it; builtins print no module)."""
    made = _MADE_BY_FINEJOBS.get(error.error)
    if made is not None and not error.traceback:
        return f"{made.__module__}.{made.__qualname__}"
    if error.traceback:
        line = re.compile(rf"^((?:[A-Za-z_][\w]*\.)*){re.escape(error.error)}(?::|$)")
        for text in reversed(error.traceback.splitlines()):
            found = line.match(text)
            if found:
                return f"{found.group(1) or 'builtins.'}{error.error}"
    if made is not None:
        return f"{made.__module__}.{made.__qualname__}"
    return f"builtins.{error.error}"


def task_errors(job: Job) -> list[Any]:
    return [TaskError(exception_class_path=class_path(e), traceback=e.traceback or f"{e.error}: {e.message}")
            for e in job.errors]


def worker_ids(job: Job) -> list[str]:
    """One worker id per attempt made (``TaskResult.attempts`` counts them): the one that raised an attempt's
    error, the one running it now; ``unknown`` for an attempt that ended without error (a success)."""
    by_attempt = {e.attempt: e.worker for e in job.errors if e.worker}
    ids = [by_attempt.get(n) or UNKNOWN_WORKER for n in range(1, job.attempt + 1)]
    if job.state is JobState.RUNNING and ids and job.lease_owner:
        ids[-1] = job.lease_owner
    return ids


def task_result(task: Any, job: Job, *, backend: str) -> Any:
    """The TaskResult of ``job``, for ``task`` (the Task as declared, with this job's priority and queue)."""
    payload = job.payload
    result = TaskResult(
        task=task,
        id=str(job.id),
        status=STATUS[job.state],
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=job.started_at,
        args=list(payload.get("args") or []),
        kwargs=dict(payload.get("kwargs") or {}),
        backend=backend,
        errors=task_errors(job),
        worker_ids=worker_ids(job),
    )
    if job.state is JobState.SUCCEEDED:
        object.__setattr__(result, "_return_value", job.return_value)
    return result
