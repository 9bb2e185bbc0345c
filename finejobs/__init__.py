"""finejobs: fine-grained, durable background jobs on PostgreSQL. One work item, one job."""

from finejobs.errors import (
    Cancel,
    ConfigurationError,
    DatabaseUnavailable,
    EnqueueError,
    FinejobsError,
    InvalidJobOptions,
    JobNotFound,
    PayloadError,
    SchemaError,
    Snooze,
    UnknownKindError,
)
from finejobs.jobs import AttemptError, Job, JobContext, JobState
from finejobs.queue import JobKind, JobSpec, Queue
from finejobs.retry import Retry
from finejobs.store import Stats
from finejobs.worker import Worker, WorkerCrashed

__version__ = "0.1.0"

__all__ = [
    "AttemptError",
    "Cancel",
    "ConfigurationError",
    "DatabaseUnavailable",
    "EnqueueError",
    "FinejobsError",
    "InvalidJobOptions",
    "Job",
    "JobContext",
    "JobKind",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "PayloadError",
    "Queue",
    "Retry",
    "SchemaError",
    "Snooze",
    "Stats",
    "UnknownKindError",
    "Worker",
    "WorkerCrashed",
    "__version__",
]
