"""The store: the only package that runs SQL. One module per table family, the hot statements beside the
methods that run them, all bound parameters (no SQL is ever built from user strings).

```
tables       the tables (SQLAlchemy Core) and shared constants
_base        StoreBase: URLs, the engine, transactions, the fast path, lenient decoding, LISTEN
migrate      MigrationStore: the SQL migrations in finejobs/migrations
jobs         JobRowsStore: enqueue, reads, single-job operations, Stats
hot          HotPathStore: claim, batched completion, heartbeat, release, rescue, expiry, pruning
shards       ShardStore: partitions, shard counts, the outbox of a move between databases
schedules    ScheduleStore: schedule rows
operations   OperationsStore: filtered keyset pages, bounded counts, bulk actions (finejobs.admin)
control      ControlStore: pauses, the worker registry, the audit log
groups       GroupStore: groups of jobs, their counters and callbacks
pipelines    PipelineStore: step pipelines, their steps and work chunks
pipeline_tx  PipelineTx: one run's business transaction (its row locked), for finejobs.pipeline_engine
bulk         BulkStore: COPY of many new jobs (finejobs.importing)
```
``JobStore`` is all of them on one engine. Methods are noun-first, take keyword arguments and return frozen
dataclasses, never raw rows.
"""

from __future__ import annotations

from finejobs.jobs import NewJob, Outcome
from finejobs.store._base import (
    Notifications,
    StoreBase,
    UserConnection,
    connection_database_id,
    libpq_url,
    mask_url,
    normalize_url,
    url_secrets,
)
from finejobs.store.bulk import BulkStore
from finejobs.store.control import AuditRow, ControlStore, PauseRow, WorkerRow
from finejobs.store.groups import GroupRow, GroupStore
from finejobs.store.hot import MaintenanceResult
from finejobs.store.jobs import JobRowsStore, Stats
from finejobs.store.migrate import Migration, MigrationStore, available_migrations
from finejobs.store.operations import PageRows
from finejobs.store.pipelines import PipelineStore
from finejobs.store.schedules import SCHEDULE_SETTABLE, ScheduleRow, ScheduleRunRow, ScheduleStore
from finejobs.store.shards import ShardInfo, ShardStore
from finejobs.store.tables import (
    DEFAULT_PARTITION,
    NOTIFY_CHANNEL,
    UNFINISHED_STORED,
    jobs_table,
    metadata,
    migrations_table,
    schedules_table,
    shard_moves_table,
)


class JobStore(ShardStore, JobRowsStore, ScheduleStore, ControlStore, MigrationStore, GroupStore, PipelineStore,
               BulkStore):
    """All database access of finejobs, on one engine. Thread-safe: each call takes a pooled connection."""


__all__ = [
    "DEFAULT_PARTITION",
    "NOTIFY_CHANNEL",
    "SCHEDULE_SETTABLE",
    "UNFINISHED_STORED",
    "AuditRow",
    "GroupRow",
    "JobStore",
    "MaintenanceResult",
    "Migration",
    "NewJob",
    "Notifications",
    "Outcome",
    "PageRows",
    "PauseRow",
    "ScheduleRow",
    "ScheduleRunRow",
    "ShardInfo",
    "Stats",
    "StoreBase",
    "UserConnection",
    "WorkerRow",
    "available_migrations",
    "connection_database_id",
    "jobs_table",
    "libpq_url",
    "mask_url",
    "metadata",
    "migrations_table",
    "normalize_url",
    "schedules_table",
    "shard_moves_table",
    "url_secrets",
]
