"""The REST API's pydantic models of groups (and pipeline runs): built from the operations API's results
(``GroupProgress.to_json()``, ``GroupDetail.to_json()``), every property declared (finejobs.web.schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from finejobs.jobs import JobState
from finejobs.limits import MAX_MESSAGE_CHARS
from finejobs.web.schemas import Model

GroupState = Literal["open", "sealed", "cancelling", "succeeded", "failed", "cancelled"]


class Group(Model):
    """A group's progress: members by state, the rate they finish at, an estimate of the time left."""

    id: int
    name: str
    database: str
    state: GroupState = Field(description="open (jobs may join), sealed, cancelling (cancelled, members still "
                                          "running), then succeeded, failed or cancelled")
    total: int
    waiting: int
    running: int
    succeeded: int
    failed: int
    expired: int
    cancelled: int
    done: int = Field(description="succeeded + failed + expired + cancelled")
    percent: float = Field(description="done of total, 0 to 100 (100 for an empty group)")
    per_second: float | None = Field(description="members finished per second (null: too few yet)")
    eta_seconds: float | None = Field(description="estimated seconds left (null: unknown, or finished)")
    created_at: datetime
    sealed_at: datetime | None
    cancelled_at: datetime | None
    finished_at: datetime | None
    callbacks: list[str] = Field(description="the events with a callback: complete, success, failure")


class GroupMember(Model):
    """A member that did not succeed (see it at /jobs/{id})."""

    id: int
    kind: str
    shard: str
    state: JobState
    error: str | None = Field(description="its last error's message")


class GroupDetail(Group):
    problems: list[GroupMember] = Field(description="the newest members that failed, expired or were cancelled")


class GroupCancel(Model):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)] = "cancelled by operator"


class GroupCancelled(Group):
    cancelled_now: int = Field(description="waiting members this request cancelled")


# ---------------------------------------------------------------- pipeline runs

RunState = Literal["running", "succeeded", "failed", "cancelled"]


class PipelineStep(Model):
    """One step of a run (``reduce``: the reduction). Chunks and items: total (made so far), done, failed,
    skipped (by the ``skip`` failure policy)."""

    step: int = Field(description="its index, from 0")
    name: str
    kind: str = Field(description="the job kind of its chunk jobs")
    gated: bool = Field(description="starts once the step before has finished (else streaming)")
    reduce: bool
    state: Literal["waiting", "running", "done", "stopped"]
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    chunks_skipped: int
    items_total: int
    items_done: int
    items_failed: int
    items_skipped: int
    started_at: datetime | None
    finished_at: datetime | None


class Pipeline(Model):
    """A pipeline run: its state, params, result (the reduction's, once succeeded) or error, and its steps."""

    id: int
    name: str
    state: RunState
    shard: str
    database: str
    params: Any
    result: Any
    error: str | None = Field(description="why it failed (which step and chunk), or the cancel reason")
    created_at: datetime
    finished_at: datetime | None
    steps: list[PipelineStep]


class PipelinePage(Model):
    """Runs newest first; pass ``next_before`` as ``before`` for the next page (null: no more)."""

    pipelines: list[Pipeline]
    next_before: int | None


class PipelineCancel(Model):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)] = "cancelled by operator"
