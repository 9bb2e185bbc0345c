"""The tables finejobs owns, declared with SQLAlchemy Core (a test compares them with the migrated schema),
and the constants the statements share.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

NOTIFY_CHANNEL = "finejobs"


UNFINISHED_STORED = ("available", "running")


metadata = sa.MetaData()


jobs_table = sa.Table(
    "finejobs_jobs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    # 0004: the table is LIST-partitioned by shard, and the primary key is (id, shard).
    sa.Column("shard", sa.Text, nullable=False, server_default="default", primary_key=True),
    sa.Column("payload", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("state", sa.Text, nullable=False, server_default="available"),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("run_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("unique_key", sa.Text),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("errors", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    # 0002 (schedules): the tick a job was made for, and what its handler said ('idle', 'timeout').
    sa.Column("schedule_id", sa.BigInteger),
    sa.Column("fire_at", sa.DateTime(timezone=True)),
    sa.Column("result", sa.Text),
    # 0003: claims so far, never given back (the fencing token of completions).
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    # 0004: "<database>/<id>" of the job this one was moved from (finejobs shards move).
    sa.Column("moved_from", sa.Text),
    # 0007: the enqueuer's W3C trace context (finejobs.tracing), NULL when tracing is off.
    sa.Column("trace", pg.JSONB),
    # What the handler returned, as JSON (0008; succeeded jobs only, NULL when it returned None).
    sa.Column("return_value", pg.JSONB),
    # 0010: the group this job is a member of (finejobs_groups), if any.
    sa.Column("group_id", sa.BigInteger),
)


shard_moves_table = sa.Table(
    # 0004: the outbox of `finejobs shards move` in the source database (see the migration).
    "finejobs_shard_moves",
    metadata,
    sa.Column("job_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("shard", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("job", pg.JSONB, nullable=False),
    sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


migrations_table = sa.Table(
    "finejobs_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


# Advisory-lock keys (arbitrary constants, one per exclusive activity).
_LOCK_MIGRATE = 0x66696E656A6F6201


_LOCK_RESCUE = 0x66696E656A6F6202


_LOCK_EXPIRE = 0x66696E656A6F6203


_LOCK_PRUNE = 0x66696E656A6F6204


_LOCK_SHARDS = 0x66696E656A6F6205


# Per-shard maintenance takes the two-key form pg_try_advisory_xact_lock(activity, shard_lock_key(shard)).
_SHARD_LOCK_RESCUE, _SHARD_LOCK_EXPIRE, _SHARD_LOCK_PRUNE = 0x666A0001, 0x666A0002, 0x666A0003


DEFAULT_PARTITION = "finejobs_jobs_other"


schedules_table = sa.Table(
    "finejobs_schedules",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("shard", sa.Text, nullable=False, server_default="default"),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("rule", pg.JSONB, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("start_at", sa.DateTime(timezone=True)),
    sa.Column("end_at", sa.DateTime(timezone=True)),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("misfire", sa.Text, nullable=False, server_default="coalesce"),
    sa.Column("misfire_limit", sa.Integer, nullable=False, server_default="100"),
    sa.Column("misfire_grace", sa.Interval, nullable=False, server_default=sa.text("'60 seconds'")),
    sa.Column("overlap", sa.Text, nullable=False, server_default="skip"),
    sa.Column("expires_in", sa.Interval),
    sa.Column("next_fire_at", sa.DateTime(timezone=True)),
    sa.Column("last_fire_at", sa.DateTime(timezone=True)),
    sa.Column("last_job_id", sa.BigInteger),
    sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("skipped", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("source", sa.Text, nullable=False, server_default="runtime"),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # 0005: the ticks that made a run (run-now runs aside): what a rule's COUNT counts.
    sa.Column("fired", sa.BigInteger, nullable=False, server_default="0"),
)


groups_table = sa.Table(
    # 0010: groups of jobs, their counters and callbacks (see the migration).
    "finejobs_groups",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("succeeded", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("expired", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cancelled", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("callbacks", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("outcome", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sealed_at", sa.DateTime(timezone=True)),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    sa.Column("first_done_at", sa.DateTime(timezone=True)),
    sa.Column("last_done_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


# ---- 0011 (pipelines): the pipeline tables go below this line.


pipelines_table = sa.Table(
    # 0011: one row per pipeline run (see the migration).
    "finejobs_pipelines",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("params", pg.JSONB, nullable=False),
    sa.Column("shard", sa.Text, nullable=False, server_default="default"),
    sa.Column("state", sa.Text, nullable=False, server_default="running"),
    sa.Column("steps", pg.JSONB, nullable=False),
    sa.Column("reduce_job", sa.BigInteger),
    sa.Column("result", pg.JSONB),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


pipeline_steps_table = sa.Table(
    # 0011: each step's counters (the reduction included).
    "finejobs_pipeline_steps",
    metadata,
    sa.Column("pipeline_id", sa.BigInteger, sa.ForeignKey("finejobs_pipelines.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("gated", sa.Boolean, nullable=False),
    sa.Column("reduce", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.false()),
    *(sa.Column(f"{what}_{count}", sa.BigInteger, nullable=False, server_default="0")
      for what in ("chunks", "items") for count in ("total", "done", "failed", "skipped")),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


chunks_table = sa.Table(
    # 0011: the work items of pipeline steps, a JSON array per chunk.
    "finejobs_chunks",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("pipeline_id", sa.BigInteger, sa.ForeignKey("finejobs_pipelines.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("items", pg.JSONB, nullable=False),
    sa.Column("n_items", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("producer_job", sa.BigInteger),
    sa.Column("producer_claims", sa.Integer),
    sa.Column("job_id", sa.BigInteger),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


_LOCK_PIPELINES = 0x66696E656A6F6211  # the reconcile pass of pipelines (finejobs.pipeline_engine.reconcile)
