"""finejobs: fine-grained, durable background jobs on PostgreSQL. One work item, one job."""

from finejobs._version import __version__
from finejobs.admin import Admin, BulkResult, Count, JobPage, Overview, Pause, WorkerInfo
from finejobs.errors import (
    Cancel,
    ConfigurationError,
    DatabaseUnavailable,
    EnqueueError,
    FinejobsError,
    GroupNotFound,
    InvalidJobOptions,
    JobNotFound,
    PayloadError,
    PipelineNotFound,
    SchemaError,
    Snooze,
    UnknownKindError,
)
from finejobs.filters import JobFilter
from finejobs.groups import Callback, Group, GroupProgress, GroupTimeout
from finejobs.importing import ImportResult
from finejobs.jobs import AttemptError, Job, JobContext, JobState
from finejobs.kinds import JobKind, JobSpec
from finejobs.outcomes import Idle
from finejobs.pipeline_info import PipelineInfo, StepProgress
from finejobs.pipelines import Pipeline, PipelineRun, StepContext
from finejobs.queue import Queue
from finejobs.retry import Retry
from finejobs.runtime.observers import WorkerObserver
from finejobs.runtime.worker import Worker, WorkerCrashed
from finejobs.runtime.worker_group import WorkerGroup
from finejobs.schedule_ops import Schedule, ScheduleRun
from finejobs.scheduler import ScheduleNotFound, ScheduleSpec
from finejobs.schedules import Adaptive, Cron, DailyAt, Every, Once, RRule, Rule
from finejobs.services import ServiceDefinition, ServiceFileError
from finejobs.shard_move import MoveReport, move_shard
from finejobs.sharding import ByField, ByHash, ShardMap, ShardRule, hash_bucket
from finejobs.store import ShardInfo, Stats

__all__ = [
    "Adaptive",
    "Admin",
    "AttemptError",
    "BulkResult",
    "ByField",
    "ByHash",
    "Callback",
    "Cancel",
    "ConfigurationError",
    "Count",
    "Cron",
    "DailyAt",
    "DatabaseUnavailable",
    "EnqueueError",
    "Every",
    "FinejobsError",
    "Group",
    "GroupNotFound",
    "GroupProgress",
    "GroupTimeout",
    "Idle",
    "ImportResult",
    "InvalidJobOptions",
    "Job",
    "JobContext",
    "JobFilter",
    "JobKind",
    "JobNotFound",
    "JobPage",
    "JobSpec",
    "JobState",
    "MoveReport",
    "Once",
    "Overview",
    "Pause",
    "PayloadError",
    "Pipeline",
    "PipelineInfo",
    "PipelineNotFound",
    "PipelineRun",
    "Queue",
    "RRule",
    "Retry",
    "Rule",
    "Schedule",
    "ScheduleNotFound",
    "ScheduleRun",
    "ScheduleSpec",
    "SchemaError",
    "ServiceDefinition",
    "ServiceFileError",
    "ShardInfo",
    "ShardMap",
    "ShardRule",
    "Snooze",
    "Stats",
    "StepContext",
    "StepProgress",
    "UnknownKindError",
    "Worker",
    "WorkerCrashed",
    "WorkerGroup",
    "WorkerInfo",
    "WorkerObserver",
    "__version__",
    "hash_bucket",
    "move_shard",
]
