"""The transactions of pipeline runs (see finejobs.store.pipelines): ``PipelineTx``, one short transaction
holding a run's row lock, whose methods are single statements, and ``PipelineMaintenanceTx``, the reconcile
pass's. The row dataclasses the pipeline store returns are here too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from finejobs.jobs import NewJob
from finejobs.store import citus
from finejobs.store._base import UserConnection, _run
from finejobs.store.tables import _LOCK_PIPELINES

if TYPE_CHECKING:
    from finejobs.store.pipelines import PipelineStore

FINAL_JOB_STATES = ("succeeded", "failed", "expired", "cancelled")
COUNTERS = tuple(f"{what}_{count}" for what in ("chunks", "items") for count in ("total", "done", "failed", "skipped"))


@dataclass(frozen=True)
class PipelineRow:
    """One run as stored; ``steps`` is the declaration's snapshot (a reduction is the last entry)."""

    id: int
    name: str
    params: Any
    shard: str
    state: str
    steps: list[dict[str, Any]]
    reduce_job: int | None
    result: Any
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PipelineRow:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class StepRow:
    """One step's counters as stored."""

    pipeline_id: int
    step: int
    name: str
    kind: str
    gated: bool
    reduce: bool
    closed: bool
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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StepRow:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def settled(self) -> int:
        """Chunks done, failed or skipped."""
        return self.chunks_done + self.chunks_failed + self.chunks_skipped


@dataclass(frozen=True)
class ChunkRow:
    """A chunk without its items."""

    id: int
    pipeline_id: int
    step: int
    state: str
    n_items: int
    job_id: int | None
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ChunkRow:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class ChunkInput:
    """What a step job reads before it runs: its chunk (items included) and its run."""

    chunk: ChunkRow
    items: list[Any]
    pipeline: PipelineRow


@dataclass(frozen=True)
class LostWork:
    """A queued chunk (or a run's reduction: ``chunk_id`` None) whose job ended without finishing it."""

    pipeline_id: int
    chunk_id: int | None
    job_id: int | None
    job_state: str | None  # None: the job row is gone (pruned or deleted)
    error: str | None
    message: str | None


_PIPELINE_COLUMNS = "id, name, params, shard, state, steps, reduce_job, result, error, created_at, finished_at"
_CHUNK_COLUMNS = "id, pipeline_id, step, state, n_items, job_id, error"

_STEPS = sa.text("SELECT * FROM finejobs_pipeline_steps WHERE pipeline_id = :id ORDER BY step")

_FENCE = sa.text("""
    SELECT id FROM finejobs_jobs
    WHERE id = :job_id AND shard = :shard AND state = 'running' AND lease_owner = :owner AND claims = :claims
    FOR UPDATE
""")

_CHUNK = sa.text(f"SELECT {_CHUNK_COLUMNS} FROM finejobs_chunks WHERE id = :id AND pipeline_id = :pipeline_id")

_DROP_PENDING = sa.text("""
    DELETE FROM finejobs_chunks
    WHERE producer_job = :job_id AND state = 'pending' AND pipeline_id = :pipeline_id
      AND (CAST(:keep AS integer) IS NULL OR producer_claims <> :keep)
    RETURNING id
""")

_DROP_ALL_PENDING = sa.text(
    "DELETE FROM finejobs_chunks WHERE pipeline_id = :pipeline_id AND state = 'pending' RETURNING id")

_ACTIVATE = sa.text("""
    UPDATE finejobs_chunks SET state = :state, producer_job = NULL, producer_claims = NULL
    WHERE producer_job = :job_id AND producer_claims = :claims AND state = 'pending' AND pipeline_id = :pipeline_id
      AND step = :step
    RETURNING id, n_items
""")

_QUEUE_READY = sa.text("""
    UPDATE finejobs_chunks SET state = 'queued'
    WHERE pipeline_id = :pipeline_id AND step = :step AND state = 'ready'
    RETURNING id
""")

_SET_JOBS = sa.text("""
    UPDATE finejobs_chunks c SET job_id = u.job_id
    FROM unnest(CAST(:ids AS bigint[]), CAST(:jobs AS bigint[])) AS u(id, job_id)
    WHERE c.id = u.id
""")

_CHUNK_END = sa.text("""
    UPDATE finejobs_chunks SET state = :state, error = :error, finished_at = :now
    WHERE id = :id AND pipeline_id = :pipeline_id
""")

_OUTPUTS_DONE = sa.text("""
    UPDATE finejobs_chunks SET state = 'done', finished_at = :now
    WHERE pipeline_id = :pipeline_id AND step = :step AND state = 'ready'
""")

_COUNT = sa.text(f"""
    UPDATE finejobs_pipeline_steps
    SET {", ".join(f"{c} = {c} + :{c}" for c in COUNTERS)},
        started_at = CASE WHEN :started THEN COALESCE(started_at, :now) ELSE started_at END
    WHERE pipeline_id = :pipeline_id AND step = :step
""")

_CLOSE = sa.text("UPDATE finejobs_pipeline_steps SET closed = true WHERE pipeline_id = :pipeline_id AND step = :step")

_STEP_FINISH = sa.text("""
    UPDATE finejobs_pipeline_steps SET finished_at = :now, closed = true
    WHERE pipeline_id = :pipeline_id AND step = :step AND finished_at IS NULL
""")

_FINISH = sa.text(f"""
    UPDATE finejobs_pipelines SET state = :state, result = CAST(:result AS jsonb), error = :error, finished_at = :now
    WHERE id = :pipeline_id AND state = 'running'
    RETURNING {_PIPELINE_COLUMNS}
""")

_SET_REDUCE_JOB = sa.text(f"""
    UPDATE finejobs_pipelines SET reduce_job = :job_id WHERE id = :pipeline_id AND reduce_job IS NULL
    RETURNING {_PIPELINE_COLUMNS}
""")

_CANCEL_WAITING = sa.text(f"""
    UPDATE finejobs_jobs AS j
    SET state = 'cancelled', finished_at = :now,
        errors = j.errors || {citus.error_entry(attempt="j.attempt", error="'Cancelled'",
                                                message="CAST(:reason AS text)", worker="NULL")}
    WHERE j.shard = :shard AND j.state = 'available'
      AND j.id = ANY(ARRAY(SELECT c.job_id FROM finejobs_chunks c
                           WHERE c.pipeline_id = :pipeline_id AND c.state = 'queued' AND c.job_id IS NOT NULL
                           UNION ALL SELECT CAST(:reduce_job AS bigint)))
    RETURNING j.id
""")

_JOB_STATE = sa.text("""
    SELECT state, errors -> -1 ->> 'error' AS error, errors -> -1 ->> 'message' AS message
    FROM finejobs_jobs WHERE id = :job_id AND shard = :shard
""")

_TRY_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key)")

_LOST_CHUNKS = sa.text("""
    SELECT c.pipeline_id, c.id AS chunk_id, c.job_id, j.state AS job_state,
           j.errors -> -1 ->> 'error' AS error, j.errors -> -1 ->> 'message' AS message
    FROM finejobs_chunks c
    JOIN finejobs_pipelines p ON p.id = c.pipeline_id AND p.state = 'running'
    LEFT JOIN finejobs_jobs j ON j.id = c.job_id AND j.shard = p.shard
    WHERE c.state = 'queued' AND (j.id IS NULL OR j.state = ANY(CAST(:final AS text[])))
    ORDER BY c.pipeline_id, c.id LIMIT :limit
""")

_LOST_REDUCTIONS = sa.text("""
    SELECT p.id AS pipeline_id, NULL::bigint AS chunk_id, p.reduce_job AS job_id, j.state AS job_state,
           j.errors -> -1 ->> 'error' AS error, j.errors -> -1 ->> 'message' AS message
    FROM finejobs_pipelines p
    LEFT JOIN finejobs_jobs j ON j.id = p.reduce_job AND j.shard = p.shard
    WHERE p.state = 'running' AND p.reduce_job IS NOT NULL
      AND (j.id IS NULL OR j.state = ANY(CAST(:final AS text[])))
    ORDER BY p.id LIMIT :limit
""")


def _chunk_jobs(ids: Sequence[int], spec: Mapping[str, Any], shard: str, now: datetime,
                payload: Mapping[str, Any] | None = None, unique_key: str | None = None) -> list[NewJob]:
    jobs = []
    for chunk_id in ids:
        body = dict(payload) if payload is not None else {"chunk": chunk_id}
        jobs.append(NewJob(kind=str(spec["kind"]), payload=body, payload_json=json.dumps(body), shard=shard,
                           priority=int(spec.get("priority", 0)), run_at=now, expires_at=None,
                           max_attempts=int(spec.get("max_attempts", 3)),
                           unique_key=unique_key or f"finejobs:chunk:{chunk_id}"))
    return jobs


class PipelineTx:
    """One transaction on one run, holding its row lock (``pipeline`` is the row as locked, kept current by
    the methods that change it). Each method is one statement (or two: jobs inserted, then their ids noted)."""

    def __init__(self, store: PipelineStore, conn: UserConnection, row: PipelineRow, now: datetime) -> None:
        self._store = store
        self._conn = conn
        self.pipeline = row
        self.now = now

    def _run(self, stmt: sa.TextClause, **params: Any) -> list[Mapping[Any, Any]]:
        return _run(self._conn, stmt, {"pipeline_id": self.pipeline.id, "now": self.now, **params})

    def fence(self, *, job_id: int, owner: str, claims: int) -> bool:
        """Lock the job row if this claim still holds it (running, this owner, this claim count)."""
        return bool(self._run(_FENCE, job_id=job_id, shard=self.pipeline.shard, owner=owner, claims=claims))

    def chunk(self, chunk_id: int) -> ChunkRow | None:
        rows = self._run(_CHUNK, id=chunk_id)
        return ChunkRow.from_row(rows[0]) if rows else None

    def steps(self) -> list[StepRow]:
        return [StepRow.from_row(r) for r in _run(self._conn, _STEPS, {"id": self.pipeline.id})]

    def job_state(self, job_id: int) -> tuple[str | None, str | None]:
        """The job's stored state and its last error message (None, None: no such row)."""
        rows = self._run(_JOB_STATE, job_id=job_id, shard=self.pipeline.shard)
        return (rows[0]["state"], rows[0]["message"]) if rows else (None, None)

    def drop_pending(self, *, job_id: int, keep_claims: int | None = None) -> int:
        """Delete the chunks ``job_id`` emitted and never committed (but those of claim ``keep_claims``)."""
        return len(self._run(_DROP_PENDING, job_id=job_id, keep=keep_claims))

    def drop_all_pending(self) -> int:
        """Delete every uncommitted chunk of the run (it ended)."""
        return len(self._run(_DROP_ALL_PENDING))

    def activate(self, *, job_id: int, claims: int, step: int, queue: Mapping[str, Any] | None) -> tuple[int, int]:
        """Commit the chunks claim ``claims`` of ``job_id`` emitted for ``step``: queued with a job each (``queue``:
        the step's snapshot entry), else ready. Returns (chunks, items)."""
        rows = self._run(_ACTIVATE, job_id=job_id, claims=claims, step=step,
                         state="ready" if queue is None else "queued")
        ids = sorted(int(r["id"]) for r in rows)
        if queue is not None and ids:
            self._enqueue(ids, queue)
        return len(rows), sum(int(r["n_items"]) for r in rows)

    def queue_ready(self, *, step: int, spec: Mapping[str, Any]) -> int:
        """Queue (a job each) every ready chunk of ``step``; returns how many."""
        ids = sorted(int(r["id"]) for r in self._run(_QUEUE_READY, step=step))
        if ids:
            self._enqueue(ids, spec)
        return len(ids)

    def _enqueue(self, ids: list[int], spec: Mapping[str, Any]) -> None:
        jobs = self._store._insert(self._conn, _chunk_jobs(ids, spec, self.pipeline.shard, self.now), self.now)
        self._run(_SET_JOBS, ids=ids, jobs=[job.id for job in jobs])

    def enqueue_reduce(self, *, spec: Mapping[str, Any]) -> int:
        """Enqueue the run's reduction job and note it on the run (once: the row's reduce_job is NULL before)."""
        key = f"finejobs:pipeline:{self.pipeline.id}:reduce"
        payload = {"pipeline": self.pipeline.id, "reduce": True}
        (job,) = self._store._insert(self._conn, _chunk_jobs([0], spec, self.pipeline.shard, self.now,
                                                             payload=payload, unique_key=key), self.now)
        rows = self._run(_SET_REDUCE_JOB, job_id=job.id)
        if rows:
            self.pipeline = PipelineRow.from_row(rows[0])
        return job.id

    def chunk_end(self, *, chunk_id: int, state: str, error: str | None = None) -> None:
        self._run(_CHUNK_END, id=chunk_id, state=state, error=error)

    def outputs_done(self, *, step: int) -> None:
        """Mark the reduction's input chunks done (it has read them)."""
        self._run(_OUTPUTS_DONE, step=step)

    def count(self, step: int, *, started: bool = False, **deltas: int) -> None:
        """Add ``deltas`` (chunks_total=..., items_done=...) to a step's counters."""
        unknown = set(deltas) - set(COUNTERS)
        if unknown:
            raise ValueError(f"unknown counters {sorted(unknown)}")
        self._run(_COUNT, step=step, started=started, **{c: deltas.get(c, 0) for c in COUNTERS})

    def close(self, step: int) -> None:
        self._run(_CLOSE, step=step)

    def step_finish(self, step: int) -> None:
        self._run(_STEP_FINISH, step=step)

    def finish(self, *, state: str, result_json: str | None = None, error: str | None = None) -> bool:
        """End the run (if it is still running); returns whether this call ended it."""
        rows = self._run(_FINISH, state=state, result=result_json, error=error)
        if rows:
            self.pipeline = PipelineRow.from_row(rows[0])
        return bool(rows)

    def cancel_waiting(self, *, reason: str) -> int:
        """Cancel the waiting jobs of the run's queued chunks (and of its reduction); returns how many."""
        rows = self._run(_CANCEL_WAITING, shard=self.pipeline.shard, reason=reason, now_iso=self.now.isoformat(),
                         reduce_job=self.pipeline.reduce_job)
        return len(rows)


class PipelineMaintenanceTx:
    """The reconcile pass's transaction: the pass's advisory lock, the lost work it finds, and a PipelineTx per
    run it repairs, all on one connection."""

    def __init__(self, store: PipelineStore, conn: Connection, now: datetime) -> None:
        self._store = store
        self._conn = conn
        self.now = now

    def try_lock(self) -> bool:
        return bool(self._conn.execute(_TRY_LOCK, {"key": _LOCK_PIPELINES}).scalar())

    def lost(self, *, limit: int) -> list[LostWork]:
        """Queued chunks and reductions of running runs whose job is final (or gone), chunks first."""
        params = {"final": list(FINAL_JOB_STATES), "limit": limit}
        rows = [*_run(self._conn, _LOST_CHUNKS, params), *_run(self._conn, _LOST_REDUCTIONS, params)]
        return [LostWork(**{f.name: r[f.name] for f in fields(LostWork)}) for r in rows]

    def pipeline(self, pipeline_id: int) -> PipelineTx:
        return self._store._lock(self._conn, pipeline_id, self.now)


