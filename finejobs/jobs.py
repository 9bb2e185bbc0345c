"""Jobs as values: the state enum, the Job record, the errors kept on it, the handler context."""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobState(enum.StrEnum):
    """Where a job is in its life. See docs/state-machine.md.

    ``scheduled`` and ``available`` are one stored state: a pending job is ``scheduled`` while its
    ``run_at`` is in the future and ``available`` once it may run.
    """

    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED})
UNFINISHED_STATES = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING})


@dataclass(frozen=True)
class AttemptError:
    """What went wrong in one attempt (or why it ended without a result)."""

    attempt: int
    at: datetime
    error: str
    message: str
    traceback: str | None = None
    worker: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptError:
        return cls(
            attempt=int(data["attempt"]),
            at=datetime.fromisoformat(data["at"]),
            error=str(data["error"]),
            message=str(data.get("message", "")),
            traceback=data.get("traceback"),
            worker=data.get("worker"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": self.at.isoformat(),
            "error": self.error,
            "message": self.message,
            "traceback": self.traceback,
            "worker": self.worker,
        }


@dataclass(frozen=True)
class Job:
    """A snapshot of one job row."""

    id: int
    kind: str
    shard: str
    payload: dict[str, Any]
    state: JobState
    priority: int
    run_at: datetime
    expires_at: datetime | None
    attempt: int
    max_attempts: int
    unique_key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    errors: tuple[AttemptError, ...]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    claims: int = 0  # times claimed, never given back (the fencing token of completions)
    schedule_id: int | None = None  # the schedule whose tick made this job, if any
    fire_at: datetime | None = None  # ... and that tick
    result: str | None = None  # what the handler said: "idle" (it returned finejobs.Idle), "timeout", ...
    # Why this row cannot be run, if it could not be decoded (a row written around finejobs' checks): a
    # worker that claims it fails it at once with this reason instead of running it.
    defect: str | None = None
    # The W3C trace context of the enqueuer ({"traceparent": ..., "tracestate": ...}) when tracing was on
    # (finejobs.tracing); the execution span links to it. None without tracing.
    trace: dict[str, str] | None = None
    # What the handler returned (JSON: dicts, lists, strings, numbers, booleans) when the job succeeded and
    # the handler returned something other than None or finejobs.Idle that JSON can keep; else None.
    return_value: Any = None
    group_id: int | None = None  # the group this job is a member of (queue.group), if any

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], *, now: datetime) -> Job:
        """Build a Job from a job-table row; ``now`` tells ``scheduled`` from ``available``.

        Never raises on a row's content: a row that cannot be decoded (a payload that is not an object, an
        unreadable time or errors list: see store's lenient loaders) becomes a Job whose ``defect`` says
        why, so that one bad row fails alone instead of taking down whoever reads it."""
        try:
            return cls._decode(row, now=now)
        except Exception as exc:
            return cls._defective(row, now=now, why=f"its row could not be decoded: {type(exc).__name__}: {exc}")

    @classmethod
    def _decode(cls, row: Mapping[Any, Any], *, now: datetime) -> Job:
        for name in ("payload", "errors", "run_at", "expires_at", "created_at", "started_at", "finished_at",
                     "lease_expires_at", "fire_at"):
            value = row.get(name)
            if isinstance(value, Undecodable):
                raise ValueError(f"{name}: {value.why}")
        if not isinstance(row["payload"], dict):
            raise ValueError(f"payload: a JSON {type(row['payload']).__name__}, not an object")
        state = JobState(row["state"])
        if state is JobState.AVAILABLE and row["run_at"] > now:
            state = JobState.SCHEDULED
        return cls(
            id=row["id"],
            kind=row["kind"],
            shard=row["shard"],
            payload=dict(row["payload"]),
            state=state,
            priority=row["priority"],
            run_at=row["run_at"],
            expires_at=row["expires_at"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            unique_key=row["unique_key"],
            lease_owner=row["lease_owner"],
            lease_expires_at=row["lease_expires_at"],
            errors=tuple(AttemptError.from_json(e) for e in row["errors"] or ()),
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            claims=row.get("claims", 0),
            schedule_id=row.get("schedule_id"),
            fire_at=row.get("fire_at"),
            result=row.get("result"),
            trace=trace_carrier(row.get("trace")),
            return_value=_lenient(row.get("return_value")),
            group_id=row.get("group_id"),
        )

    @classmethod
    def _defective(cls, row: Mapping[Any, Any], *, now: datetime, why: str) -> Job:
        """The parts of a row that a worker needs to fail it (id, shard, attempt, claims), the rest blank."""
        def time(name: str) -> datetime | None:
            value = row.get(name)
            return value if isinstance(value, datetime) else None

        def number(name: str, default: int) -> int:
            value = row.get(name)
            return value if isinstance(value, int) else default

        return cls(
            id=row["id"], kind=str(row.get("kind")), shard=str(row.get("shard")), payload={},
            state=JobState(row["state"]) if row.get("state") in set(JobState) else JobState.RUNNING,
            priority=number("priority", 0), run_at=time("run_at") or now, expires_at=None,
            attempt=number("attempt", 1), max_attempts=number("max_attempts", 1), unique_key=row.get("unique_key"),
            lease_owner=row.get("lease_owner"), lease_expires_at=time("lease_expires_at"), errors=(),
            created_at=time("created_at") or now, started_at=time("started_at"), finished_at=time("finished_at"),
            claims=number("claims", 0), schedule_id=row.get("schedule_id"), fire_at=time("fire_at"),
            result=row.get("result"), defect=why[:2000], trace=trace_carrier(row.get("trace")),
            group_id=row.get("group_id") if isinstance(row.get("group_id"), int) else None,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (used by ``finejobs jobs show --json``)."""
        def ts(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.id,
            "kind": self.kind,
            "shard": self.shard,
            "payload": self.payload,
            "state": self.state.value,
            "priority": self.priority,
            "run_at": ts(self.run_at),
            "expires_at": ts(self.expires_at),
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "unique_key": self.unique_key,
            "lease_owner": self.lease_owner,
            "lease_expires_at": ts(self.lease_expires_at),
            "errors": [e.to_json() for e in self.errors],
            "created_at": ts(self.created_at),
            "started_at": ts(self.started_at),
            "finished_at": ts(self.finished_at),
            "claims": self.claims,
            "schedule_id": self.schedule_id,
            "fire_at": ts(self.fire_at),
            "result": self.result,
            "defect": self.defect,
            "trace": self.trace,
            "group_id": self.group_id,
        }


@dataclass(frozen=True)
class NewJob:
    """A validated job, ready to insert."""

    kind: str
    payload: dict[str, Any]
    payload_json: str
    shard: str
    priority: int
    run_at: datetime
    expires_at: datetime | None
    max_attempts: int
    unique_key: str | None
    trace: dict[str, str] | None = None  # the enqueuer's W3C trace context (finejobs.tracing), stored as jsonb
    group_id: int | None = None  # the group it joins (queue.group), counted in the inserting transaction


TRACE_KEYS = ("traceparent", "tracestate")  # what a stored trace context may hold
MAX_TRACE_CHARS = 512  # per value: a W3C traceparent is 55 characters, a tracestate at most 512


def trace_carrier(value: object) -> dict[str, str] | None:
    """A stored trace context as a carrier for the W3C propagator, decoded leniently: anything but an object
    holding a string ``traceparent`` (a row written around finejobs, an old format) is None, never an error:
    tracing is best effort and must not make a job unrunnable."""
    if not isinstance(value, Mapping):
        return None
    found = {key: value[key] for key in TRACE_KEYS
             if isinstance(value.get(key), str) and len(value[key]) <= MAX_TRACE_CHARS}
    return found if "traceparent" in found else None


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, to be written by ``job_complete_many``.

    ``state`` is the stored state to move to ("available" for a retry, a snooze or a release).
    ``uncount`` is 1 when the attempt must not count (snooze, release of an unstarted job).
    """

    job_id: int
    attempt: int
    state: str
    finished_at: datetime | None = None
    run_at: datetime | None = None
    error: AttemptError | None = None
    uncount: int = 0
    result: str | None = None  # 'idle' (the handler returned finejobs.Idle) or 'timeout'
    # The job's claim count when this worker claimed it: a fencing token that, unlike the attempt, is never
    # given back (a Snooze or a release returns the attempt, so attempt + owner alone could match a later
    # claim of the same job by the same worker). None: guard by attempt and owner only.
    claims: int | None = None
    # The job's shard: the write then touches that shard's partition only. None: look in every partition.
    shard: str | None = None
    # A success's return value as the JSON text to store (finejobs.outcomes.succeeded), None for none.
    return_value: str | None = None
    # The job's group: the write then updates the group's counters in the same transaction.
    group_id: int | None = None


def _lenient(value: Any) -> Any:
    """A stored value nothing depends on for correctness: one that could not be decoded reads as None."""
    return None if isinstance(value, Undecodable) else value


@dataclass(frozen=True)
class Undecodable:
    """What finejobs' lenient loaders give for a column value they cannot turn into Python (a timestamp past
    year 9999, JSON nested past Python's recursion limit): Job.from_row then marks the row defective."""

    why: str


@dataclass
class JobContext:
    """Passed as the second argument to handlers that take two parameters."""

    job: Job
    worker_id: str
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def is_last_attempt(self) -> bool:
        return self.job.attempt >= self.job.max_attempts
