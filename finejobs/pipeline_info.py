"""What a pipeline run looks like from outside: its state, result, and each step's progress (chunks and items
total / done / failed / skipped). Frozen dataclasses with ``to_json()``, built from the store's rows; the
operations API (finejobs.admin.pipelines) and ``PipelineRun.progress()`` return them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from finejobs.store.pipelines import PipelineRow, StepRow

STEP_STATES = ("waiting", "running", "done", "stopped")


@dataclass(frozen=True)
class StepProgress:
    """One step of a run (``reduce``: the reduction). ``state``: waiting (no chunk yet, and its gate is shut),
    running, done, or stopped (the run ended before the step finished)."""

    step: int
    name: str
    kind: str
    gated: bool
    reduce: bool
    state: str
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
    def from_row(cls, row: StepRow, run_state: str) -> StepProgress:
        if row.finished_at is not None:
            state = "done"
        elif run_state != "running":
            state = "stopped"
        elif row.chunks_total or row.started_at is not None:
            state = "running"
        else:
            state = "waiting"
        return cls(step=row.step, name=row.name, kind=row.kind, gated=row.gated, reduce=row.reduce, state=state,
                   chunks_total=row.chunks_total, chunks_done=row.chunks_done, chunks_failed=row.chunks_failed,
                   chunks_skipped=row.chunks_skipped, items_total=row.items_total, items_done=row.items_done,
                   items_failed=row.items_failed, items_skipped=row.items_skipped, started_at=row.started_at,
                   finished_at=row.finished_at)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


@dataclass(frozen=True)
class PipelineInfo:
    """One run: ``state`` is running, succeeded, failed or cancelled; ``result`` the reduction's return value
    (JSON) once it succeeded; ``error`` why it failed (which step and chunk) or the cancel reason."""

    id: int
    name: str
    state: str
    shard: str
    params: Any
    result: Any
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    steps: tuple[StepProgress, ...]
    database: str = "default"

    @classmethod
    def from_rows(cls, row: PipelineRow, steps: list[StepRow], database: str = "default") -> PipelineInfo:
        return cls(id=row.id, name=row.name, state=row.state, shard=row.shard, params=row.params, result=row.result,
                   error=row.error, created_at=row.created_at, finished_at=row.finished_at,
                   steps=tuple(StepProgress.from_row(s, row.state) for s in steps), database=database)

    @property
    def finished(self) -> bool:
        return self.state != "running"

    def step(self, name: str) -> StepProgress:
        """The step named ``name`` (KeyError if none)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state, "shard": self.shard, "params": self.params,
                "result": self.result, "error": self.error, "created_at": self.created_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "database": self.database, "steps": [s.to_json() for s in self.steps]}

    def table(self) -> str:
        """Per-step progress as a plain-text table (for scripts and examples)."""
        lines = [f"pipeline {self.name} #{self.id}: {self.state}" + (f" ({self.error})" if self.error else ""),
                 f"{'step':<16} {'state':<8} {'chunks done/total':>18} {'items done/total':>18} "
                 f"{'failed':>7} {'skipped':>8}"]
        for s in self.steps:
            lines.append(f"{s.name:<16} {s.state:<8} {f'{s.chunks_done}/{s.chunks_total}':>18} "
                         f"{f'{s.items_done}/{s.items_total}':>18} {s.items_failed:>7} {s.items_skipped:>8}")
        return "\n".join(lines)
