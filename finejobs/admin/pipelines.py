"""Pipeline operations (``Admin.pipelines``): list runs, one run's per-step progress, cancel a run.

```python
ops = PipelineOps(queue)
ops.list(state="running", limit=20)          # PipelinePage, newest first; .next_before for the next page
ops.get(17).steps[1].items_done              # PipelineInfo
ops.cancel(17, "wrong parameters")           # PipelineInfo of the cancelled run
ops.delete(17)                               # a run that ended, with its steps and chunks
```
Runs live in the database of their pipeline's shard: with a shard map, name the ``database`` (default: the
shard map's default database). Bad input raises InvalidJobOptions before anything is read or written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finejobs import pipeline_engine
from finejobs.errors import FinejobsError, InvalidJobOptions
from finejobs.limits import MAX_MESSAGE_CHARS, check_int, check_text
from finejobs.pipeline_info import PipelineInfo, StepProgress
from finejobs.queue import Queue
from finejobs.store import JobStore

PIPELINE_PAGE_LIMIT = 200
RUN_STATES = ("running", "succeeded", "failed", "cancelled")

Acted = Callable[[str, dict[str, Any], "int | None", "str | None"], None]


@dataclass(frozen=True)
class PipelinePage:
    """Runs newest first; ``next_before``: pass it as ``before`` for the next page (None: no more)."""

    pipelines: tuple[PipelineInfo, ...]
    next_before: int | None

    def to_json(self) -> dict[str, Any]:
        return {"pipelines": [p.to_json() for p in self.pipelines], "next_before": self.next_before}


class PipelineOps:
    """Reads and actions on pipeline runs. ``acted`` (the Admin's audit hook) is told of each cancel:
    ``acted("pipeline cancel", {"pipeline": id}, 1, reason)``."""

    def __init__(self, queue: Queue, acted: Acted | None = None) -> None:
        self.queue = queue
        self._acted = acted

    def _store(self, database: str | None) -> tuple[str, JobStore]:
        name = self.queue.shard_map.default if database is None else database
        if name not in self.queue.databases:
            raise InvalidJobOptions(f"database: {str(name)[:80]!r} is not in the shard map "
                                    f"({', '.join(self.queue.databases)})")
        return name, self.queue.store_of(name)

    def list(self, *, limit: int = 50, before: int | None = None, state: str | None = None,
             name: str | None = None, database: str | None = None) -> PipelinePage:
        """Runs newest first (keyset on the id: ids below ``before``), of this state and pipeline name."""
        check_int("limit", limit, 1, PIPELINE_PAGE_LIMIT)
        if before is not None:
            check_int("before", before, 1, 2**63 - 1)
        if state is not None and state not in RUN_STATES:
            raise InvalidJobOptions(f"state must be one of {', '.join(RUN_STATES)}, got {str(state)[:40]!r}")
        if name is not None:
            check_text("name", name, max_chars=200)
        database, store = self._store(database)
        rows = store.pipeline_list(before=before, limit=limit + 1, state=state, name=name)
        more = len(rows) > limit
        rows = rows[:limit]
        steps = store.pipeline_steps(pipeline_ids=[r.id for r in rows]) if rows else {}
        runs = tuple(PipelineInfo.from_rows(r, steps.get(r.id, []), database) for r in rows)
        return PipelinePage(runs, rows[-1].id if more and rows else None)

    def get(self, pipeline_id: int, *, database: str | None = None) -> PipelineInfo:
        """One run with each step's progress (PipelineNotFound if there is none)."""
        check_int("pipeline id", pipeline_id, 1, 2**63 - 1)
        database, store = self._store(database)
        return pipeline_engine.info(store, pipeline_id, database=database)

    def steps(self, pipeline_id: int, *, database: str | None = None) -> tuple[StepProgress, ...]:
        """The run's steps (its progress), in order."""
        return self.get(pipeline_id, database=database).steps

    def cancel(self, pipeline_id: int, reason: str = "cancelled by operator", *,
               database: str | None = None) -> PipelineInfo:
        """Cancel a running run: waiting chunk jobs are cancelled, running ones commit nothing when they end.
        A run that already ended is refused (FinejobsError)."""
        check_int("pipeline id", pipeline_id, 1, 2**63 - 1)
        check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        database, store = self._store(database)
        done = pipeline_engine.cancel(store, pipeline_id, reason=reason, now=self.queue.clock(), database=database)
        if self._acted is not None:
            self._acted("pipeline cancel", {"pipeline": pipeline_id, "name": done.name}, 1, reason)
        return done

    def delete(self, pipeline_id: int, *, database: str | None = None) -> None:
        """Delete a run that ended (succeeded, failed, cancelled) with its steps and chunks (its jobs stay, and
        are pruned as any job). A running run is refused (FinejobsError): cancel it first."""
        check_int("pipeline id", pipeline_id, 1, 2**63 - 1)
        _, store = self._store(database)
        if not store.pipeline_delete(pipeline_id=pipeline_id):
            raise FinejobsError(f"cannot delete pipeline run {pipeline_id}: it is running (cancel it first)")
        if self._acted is not None:
            self._acted("pipeline delete", {"pipeline": pipeline_id}, 1, None)
