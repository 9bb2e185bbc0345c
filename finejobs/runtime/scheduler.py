"""The scheduler service: every worker runs one; each tick of a schedule becomes exactly one ordinary job.

The decisions (misfire, overlap, counts, the jobs a tick makes) are pure functions of finejobs.scheduler;
this service asks the store for due schedules, applies them, and re-arms adaptive schedules whose run has
finished. See finejobs.scheduler for the compare-and-set that keeps any number of schedulers exact.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from finejobs._wallclock import runs_left
from finejobs.errors import DatabaseUnavailable
from finejobs.runtime.services import Service
from finejobs.scheduler import declare_all, job_for, outcome_of, plan, rule_for
from finejobs.schedules import Adaptive
from finejobs.store import ScheduleRow

if TYPE_CHECKING:
    from finejobs.runtime.worker import Worker

log = logging.getLogger("finejobs.scheduler")


class Scheduler(Service):
    """Turns due ticks into jobs; re-arms adaptive schedules whose run has finished."""

    name = "scheduler"

    def __init__(self, worker: Worker, interval: float, batch: int = 100) -> None:
        super().__init__(worker, interval)
        self.batch = batch

    def declare(self) -> list[str]:
        """Upsert the schedules declared in code whose shard lives in this worker's database (a schedule
        lives in its shard's database, so its ticks' jobs do); returns the names whose row changed."""
        return declare_all(self.worker.queue, now=self.worker.clock(), database=self.worker.database)

    def run_once(self, now: datetime) -> int:
        """One pass; returns how many jobs it created."""
        store = self.worker.store
        created = 0
        for row in store.schedule_due(now=now, limit=self.batch):
            created += self._guarded(row, now, self._fire)
        for row in store.schedule_waiting(now=now):
            self._guarded(row, now, self._rearm)
        return created

    def _guarded(self, row: ScheduleRow, now: datetime, step: Any) -> int:
        """Run one schedule's step; a broken schedule is marked failed, never the worker's death."""
        try:
            return int(step(row, now))
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.error("schedule %r: %s; it stays stopped until it is updated", row.name, message)
            self.worker.store.schedule_update(schedule_id=row.id, version=row.version,
                                              values={"last_error": message, "next_fire_at": None}, now=now)
            return 0

    def _fire(self, row: ScheduleRow, now: datetime) -> int:
        rule = rule_for(row.rule)
        decided = plan(row, rule, now)
        if decided is None:
            return 0
        left = runs_left(rule, row.fired)
        jobs = [(job_for(row, rule, fire, now, last=left is not None and i + 1 == left), fire)
                for i, fire in enumerate(decided.fires)]
        ids = self.worker.store.schedule_fire(schedule_id=row.id, version=row.version, expected=row.next_fire_at,
                                              next_fire_at=decided.next_fire_at, jobs=jobs,
                                              skipped=decided.skipped, fired=len(jobs), now=now)
        if ids is None:
            log.debug("schedule %r: another scheduler fired it first", row.name)
            return 0
        if self.worker.observers and (ids or decided.skipped):
            self.worker.observers.schedule_fired(self.worker, row.name, len(ids), decided.skipped)
        if decided.skipped:
            log.info("schedule %r: skipped %d tick(s) (misfire=%s overlap=%s)", row.name, decided.skipped,
                     row.misfire, row.overlap)
        for job_id, fire in zip(ids, decided.fires, strict=False):
            log.info("schedule %r: tick %s -> job %d %s", row.name, fire.isoformat(), job_id, row.kind)
        return len(ids)

    def _rearm(self, row: ScheduleRow, now: datetime) -> int:
        rule = rule_for(row.rule)
        if not isinstance(rule, Adaptive):
            return 0
        outcome = outcome_of(row.last_state, row.last_result) or "success"
        upcoming = rule.next_after_outcome(row.last_finished_at or now, outcome)
        if upcoming is None or (row.end_at is not None and upcoming > row.end_at):
            return 0
        self.worker.store.schedule_update(schedule_id=row.id, version=row.version,
                                          values={"next_fire_at": upcoming}, now=now)
        log.info("schedule %r: last run %s, next run at %s", row.name, outcome, upcoming.isoformat())
        return 0
