"""Schedule operations as ``Admin.schedules`` gives them: those of finejobs.schedule_ops.Schedules, each
change written to the audit log (who, which schedule, what)."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from finejobs.kinds import JobKind
from finejobs.queue import Queue
from finejobs.schedule_ops import Schedule, Schedules
from finejobs.schedules import Rule

Acted = Callable[[str, dict[str, Any], "int | None", "str | None"], None]


class AuditedSchedules(Schedules):
    """``Schedules`` whose changes are audited (a refused change writes nothing, to the log neither)."""

    def __init__(self, queue: Queue, acted: Acted) -> None:
        super().__init__(queue)
        self._acted = acted

    def _audit(self, action: str, name: str, count: int | None = 1, detail: str | None = None) -> None:
        self._acted(f"schedule {action}", {"schedule": name}, count, detail)

    def add(self, name: str, kind: str | JobKind[Any, Any], rule: Rule, *, payload: Any = None,
            paused: bool = False, **options: Any) -> Schedule:
        added = super().add(name, kind, rule, payload=payload, paused=paused, **options)
        self._audit("add", name, detail=added.rule_text)
        return added

    def update(self, name: str, **changes: Any) -> Schedule:
        updated = super().update(name, **changes)
        self._audit("update", name, detail=", ".join(sorted(changes)) or None)
        return updated

    def delete(self, name: str) -> None:
        super().delete(name)
        self._audit("delete", name)

    def pause(self, name: str) -> Schedule:
        paused = super().pause(name)
        self._audit("pause", name)
        return paused

    def resume(self, name: str) -> Schedule:
        resumed = super().resume(name)
        self._audit("resume", name)
        return resumed

    def pause_all(self, *, kind: str | None = None) -> builtins.list[str]:
        names = super().pause_all(kind=kind)
        self._acted("schedule pause all", {"kind": kind}, len(names), None)
        return names

    def resume_all(self, *, kind: str | None = None) -> builtins.list[str]:
        # resume_all resumes each one through self.resume: each is audited, then the whole
        names = super().resume_all(kind=kind)
        self._acted("schedule resume all", {"kind": kind}, len(names), None)
        return names

    def run_now(self, name: str, *, force: bool = False) -> int:
        job_id = super().run_now(name, force=force)
        self._acted("schedule run now", {"schedule": name, "job": job_id}, 1, "forced" if force else None)
        return job_id

    def skip_next(self, name: str) -> Schedule:
        skipped = super().skip_next(name)
        self._audit("skip next", name)
        return skipped
