"""Pipeline rows (finejobs_pipelines, finejobs_pipeline_steps, finejobs_chunks): see finejobs.pipelines.

Every change to a run's steps and chunks is made in a ``PipelineTx``: one short transaction holding the run's
row lock, whose methods are single statements. The decisions (what a finished chunk means for its step and
the next) are finejobs.pipeline_engine's, in Python; nothing here decides, nothing runs in PL/pgSQL. Emitted
chunks are written before that, each in an autocommit statement of its own, as ``pending`` rows of the
attempt that emitted them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from finejobs.errors import PipelineNotFound
from finejobs.jobs import Job, NewJob
from finejobs.store._base import StoreBase, UserConnection, _run
from finejobs.store.pipeline_tx import (
    _PIPELINE_COLUMNS,
    COUNTERS,
    FINAL_JOB_STATES,
    ChunkInput,
    ChunkRow,
    LostWork,
    PipelineMaintenanceTx,
    PipelineRow,
    PipelineTx,
    StepRow,
)

_START = sa.text(f"""
    INSERT INTO finejobs_pipelines (name, params, shard, steps, created_at)
    VALUES (:name, CAST(:params AS jsonb), :shard, CAST(:steps AS jsonb), :now)
    RETURNING {_PIPELINE_COLUMNS}
""")

_STEPS_INSERT = sa.text("""
    INSERT INTO finejobs_pipeline_steps (pipeline_id, step, name, kind, gated, reduce)
    SELECT :id, s.ord - 1, s.name, s.kind, COALESCE(s.gated, true), COALESCE(s.reduce, false)
    FROM ROWS FROM (jsonb_to_recordset(CAST(:steps AS jsonb)) AS (name text, kind text, gated boolean, reduce boolean))
         WITH ORDINALITY AS s(name, kind, gated, reduce, ord)
""")

_CHUNK_INSERT = sa.text("""
    INSERT INTO finejobs_chunks (pipeline_id, step, items, n_items, state, producer_job, producer_claims, created_at)
    VALUES (:pipeline_id, :step, CAST(:items AS jsonb), :n_items, :state, :producer_job, :producer_claims, :now)
    RETURNING id
""")

_PENDING_INSERT = sa.text("""
    INSERT INTO finejobs_chunks (pipeline_id, step, items, n_items, state, producer_job, producer_claims, created_at)
    SELECT :pipeline_id, :step, u.items, u.n, 'pending', :producer_job, :producer_claims, :now
    FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS (items jsonb, n integer))
         WITH ORDINALITY AS u(items, n, ord)
    ORDER BY u.ord
    RETURNING id
""")

_CHUNK_INPUT = sa.text(f"""
    SELECT c.id, c.pipeline_id, c.step, c.state, c.n_items, c.job_id, c.error, c.items,
           {", ".join(f"p.{c} AS p_{c}" for c in _PIPELINE_COLUMNS.split(", "))}
    FROM finejobs_chunks c JOIN finejobs_pipelines p ON p.id = c.pipeline_id
    WHERE c.id = :id
""")

_DROP_CLAIM_PENDING = sa.text("""
    DELETE FROM finejobs_chunks
    WHERE producer_job = :job_id AND producer_claims = :claims AND state = 'pending' AND pipeline_id = :pipeline_id
""")

_DELETE = sa.text("DELETE FROM finejobs_pipelines WHERE id = :id AND state <> 'running' RETURNING id")

_GET = sa.text(f"SELECT {_PIPELINE_COLUMNS} FROM finejobs_pipelines WHERE id = :id")

_LOCK = sa.text(f"SELECT {_PIPELINE_COLUMNS} FROM finejobs_pipelines WHERE id = :id FOR UPDATE")

_LIST = sa.text(f"""
    SELECT {_PIPELINE_COLUMNS} FROM finejobs_pipelines
    WHERE (CAST(:before AS bigint) IS NULL OR id < :before)
      AND (CAST(:state AS text) IS NULL OR state = :state)
      AND (CAST(:name AS text) IS NULL OR name = :name)
    ORDER BY id DESC LIMIT :limit
""")

_STEPS_OF = sa.text(
    "SELECT * FROM finejobs_pipeline_steps WHERE pipeline_id = ANY(CAST(:ids AS bigint[])) ORDER BY pipeline_id, step")

_OUTPUTS_PAGE = sa.text("""
    SELECT id, items FROM finejobs_chunks
    WHERE pipeline_id = :pipeline_id AND step = :step AND state = 'ready' AND id > :after
    ORDER BY id LIMIT :limit
""")

class PipelineStore(StoreBase):
    """Pipelines, their steps and their work chunks."""

    def _insert(self, conn: UserConnection, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        raise NotImplementedError  # JobRowsStore._insert (a subclass), on the same JobStore

    def pipeline_start(self, *, name: str, params_json: str, shard: str, steps: Sequence[Mapping[str, Any]],
                       now: datetime, conn: UserConnection | None = None) -> PipelineRow:
        """Insert a run, its steps, and step 0's one chunk (``[params]``) with its job; in ``conn``'s
        transaction if given, else in one of its own."""
        if conn is None:
            with self.transaction() as own:
                return self._start(own, name, params_json, shard, steps, now)
        return self._start(conn, name, params_json, shard, steps, now)

    def _start(self, conn: UserConnection, name: str, params_json: str, shard: str,
               steps: Sequence[Mapping[str, Any]], now: datetime) -> PipelineRow:
        steps_json = json.dumps(list(steps))
        row = PipelineRow.from_row(_run(conn, _START, {"name": name, "params": params_json, "shard": shard,
                                                       "steps": steps_json, "now": now})[0])
        _run(conn, _STEPS_INSERT, {"id": row.id, "steps": steps_json})
        (chunk,) = _run(conn, _CHUNK_INSERT, {"pipeline_id": row.id, "step": 0, "items": f"[{params_json}]",
                                              "n_items": 1, "state": "queued", "producer_job": None,
                                              "producer_claims": None, "now": now})
        tx = PipelineTx(self, conn, row, now)
        tx._enqueue([int(chunk["id"])], steps[0])
        tx.count(0, started=True, chunks_total=1, items_total=1)
        tx.close(0)
        return row

    def chunk_insert_pending(self, *, pipeline_id: int, step: int, chunks: Sequence[tuple[str, int]],
                             producer_job: int, producer_claims: int, now: datetime) -> list[int]:
        """Write emitted chunks (each its items' JSON array text and their count) in one autocommit statement,
        pending until their producer's attempt commits them; returns their ids in order."""
        if not chunks:
            return []
        rows_json = "[" + ",".join(f'{{"items":{items},"n":{n}}}' for items, n in chunks) + "]"
        rows = self._fast(_PENDING_INSERT, {"pipeline_id": pipeline_id, "step": step, "rows": rows_json,
                                            "producer_job": producer_job, "producer_claims": producer_claims,
                                            "now": now})
        return sorted(int(r["id"]) for r in rows)

    def chunk_drop_pending(self, *, pipeline_id: int, job_id: int, claims: int) -> None:
        """Delete what one (stale) claim of a job emitted; it can never be committed (autocommit)."""
        self._fast(_DROP_CLAIM_PENDING, {"pipeline_id": pipeline_id, "job_id": job_id, "claims": claims})

    def chunk_input(self, *, chunk_id: int) -> ChunkInput | None:
        """A chunk with its items and its run (None: no such chunk)."""
        with self.transaction(autocommit=True) as conn:
            rows = _run(conn, _CHUNK_INPUT, {"id": chunk_id})
        if not rows:
            return None
        row = rows[0]
        run = PipelineRow.from_row({k[2:]: v for k, v in row.items() if k.startswith("p_")})
        return ChunkInput(ChunkRow.from_row(row), list(row["items"]), run)

    def pipeline_get(self, *, pipeline_id: int) -> PipelineRow:
        with self.transaction(autocommit=True) as conn:
            rows = _run(conn, _GET, {"id": pipeline_id})
        if not rows:
            raise PipelineNotFound(f"no pipeline run with id {pipeline_id}")
        return PipelineRow.from_row(rows[0])

    def pipeline_delete(self, *, pipeline_id: int) -> bool:
        """Delete a run that ended, with its steps and chunks (False: it is still running)."""
        with self.transaction() as conn:
            if _run(conn, _DELETE, {"id": pipeline_id}):
                return True
            if not _run(conn, _GET, {"id": pipeline_id}):
                raise PipelineNotFound(f"no pipeline run with id {pipeline_id}")
        return False

    def pipeline_steps(self, *, pipeline_ids: Sequence[int]) -> dict[int, list[StepRow]]:
        """The steps of these runs, in step order, by run id."""
        found: dict[int, list[StepRow]] = {i: [] for i in pipeline_ids}
        with self.transaction(autocommit=True) as conn:
            for r in _run(conn, _STEPS_OF, {"ids": list(pipeline_ids)}):
                found[r["pipeline_id"]].append(StepRow.from_row(r))
        return found

    def pipeline_list(self, *, before: int | None = None, limit: int = 50, state: str | None = None,
                      name: str | None = None) -> list[PipelineRow]:
        """Runs newest first with ids below ``before``, of this state and name (None: any)."""
        with self.transaction(autocommit=True) as conn:
            rows = _run(conn, _LIST, {"before": before, "limit": limit, "state": state, "name": name})
        return [PipelineRow.from_row(r) for r in rows]

    def pipeline_outputs(self, *, pipeline_id: int, step: int, after: int, limit: int) -> list[tuple[int, list[Any]]]:
        """One keyset page of the ready chunks of ``step`` (the reduction's input), ids above ``after``."""
        with self.transaction(autocommit=True) as conn:
            rows = _run(conn, _OUTPUTS_PAGE, {"pipeline_id": pipeline_id, "step": step, "after": after,
                                              "limit": limit})
        return [(int(r["id"]), list(r["items"])) for r in rows]

    @contextmanager
    def pipeline_tx(self, *, pipeline_id: int, now: datetime) -> Iterator[PipelineTx]:
        """A transaction holding the run's row lock (PipelineNotFound if there is no such run)."""
        with self.transaction() as conn:
            yield self._lock(conn, pipeline_id, now)

    def _lock(self, conn: Connection, pipeline_id: int, now: datetime) -> PipelineTx:
        rows = _run(conn, _LOCK, {"id": pipeline_id})
        if not rows:
            raise PipelineNotFound(f"no pipeline run with id {pipeline_id}")
        return PipelineTx(self, conn, PipelineRow.from_row(rows[0]), now)

    @contextmanager
    def pipeline_maintenance(self, *, now: datetime) -> Iterator[PipelineMaintenanceTx]:
        """The reconcile pass's transaction (see PipelineMaintenanceTx)."""
        with self.transaction() as conn:
            yield PipelineMaintenanceTx(self, conn, now)


__all__ = ["COUNTERS", "FINAL_JOB_STATES", "ChunkInput", "ChunkRow", "LostWork", "PipelineMaintenanceTx", "PipelineRow",
           "PipelineStore", "PipelineTx", "StepRow"]
