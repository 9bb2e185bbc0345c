"""The scheduler service: every worker runs one; each tick of a schedule becomes exactly one ordinary job.

The decisions (misfire, overlap, counts, the jobs a tick makes) are pure functions of finejobs.scheduler;
this service asks the store for due schedules, applies them, and re-arms adaptive schedules whose run has
finished. See finejobs.scheduler for the compare-and-set that keeps any number of schedulers exact.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from finejobs._wallclock import runs_left
from finejobs.errors import DatabaseUnavailable
from finejobs.limits import DEFAULT_SCHEDULE_BATCH
from finejobs.runtime.services import Service
from finejobs.scheduler import declare_all, job_for, outcome_of, plan, rule_for
from finejobs.schedules import Adaptive
from finejobs.store import ScheduleRow
from finejobs.store.schedules import Firing

if TYPE_CHECKING:
    from finejobs.runtime.worker import Worker

log = logging.getLogger("finejobs.scheduler")

DEFAULT_BATCH = DEFAULT_SCHEDULE_BATCH  # due schedules per statement (docs/performance.md, "Scheduler at scale")
STALL_SLACK = timedelta(seconds=5)  # beyond two intervals, a gap between passes is a downtime


@dataclass
class _Fired:
    """What one schedule of a batch did, for the log and the observers once the batch is committed."""

    row: ScheduleRow
    fires: list[datetime]
    skipped: int


class Scheduler(Service):
    """Turns due ticks into jobs, a batch at a time; re-arms adaptive schedules whose run has finished.

    A pass takes ``batch`` due schedules at a time (locked with SKIP LOCKED, so several workers split them),
    plans each in Python and writes all of a batch's jobs and advances in two statements; it takes batches
    until one comes back short, every one with the pass's ``now``."""

    name = "scheduler"

    def __init__(self, worker: Worker, interval: float, batch: int = DEFAULT_BATCH) -> None:
        super().__init__(worker, interval)
        self.batch = batch
        self._last_pass: tuple[datetime, datetime] | None = None  # (now, end) of the previous pass

    def declare(self) -> list[str]:
        """Upsert the schedules declared in code whose shard lives in this worker's database (a schedule
        lives in its shard's database, so its ticks' jobs do); returns the names whose row changed."""
        return declare_all(self.worker.queue, now=self.worker.clock(), database=self.worker.database)

    def looked(self, now: datetime) -> datetime | None:
        """When this scheduler last looked at the due schedules, if it has kept looking since: the start of
        its previous pass, unless that pass ended longer ago than a couple of intervals (the worker was
        stopped, stalled or cut off from the database: a downtime, where the misfire policies apply)."""
        if self._last_pass is None:
            return None
        started, ended = self._last_pass
        if now - ended > timedelta(seconds=2 * self.interval) + STALL_SLACK:
            return None
        return started

    def run_once(self, now: datetime) -> int:
        """One pass; returns how many jobs it created."""
        store = self.worker.store
        looked = self.looked(now)
        created = 0
        passed: list[int] = []  # left due (overlap="wait"): not taken again in this pass
        while True:
            fired: list[_Fired] = []
            decide = functools.partial(self._decide, now=now, looked=looked, fired=fired, passed=passed)
            try:
                batch = store.schedule_fire_due(now=now, limit=self.batch, passed=passed, decide=decide)
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # the database refused a batch: find its broken schedule one at a time
                log.warning("scheduler: a batch of due schedules failed (%s: %s); firing them one by one",
                            type(exc).__name__, exc)
                created += sum(self._guarded(row, now, lambda r, n: self._fire(r, n, looked))
                               for row in store.schedule_due(now=now, limit=self.batch))
                break
            if batch is None:
                log.debug("scheduler: another scheduler changed a schedule of the batch; the next pass retries")
                break
            created += sum(len(ids) for ids in batch.jobs.values())
            self._report(fired, batch.jobs)
            if batch.taken < self.batch or self._stop.is_set():
                break
        for row in store.schedule_waiting(now=now):
            self._guarded(row, now, self._rearm)
        self._last_pass = (now, self.worker.clock())
        return created

    def _decide(self, rows: list[ScheduleRow], *, now: datetime, looked: datetime | None, fired: list[_Fired],
                passed: list[int]) -> list[Firing]:
        """What each schedule of a batch does (pure Python: the rows are locked meanwhile). A broken
        schedule is marked failed, never the worker's death."""
        firings = []
        for row in rows:
            try:
                rule = rule_for(row.rule)
                decided = plan(row, rule, now, looked=looked)
                if decided is None:
                    passed.append(row.id)
                    continue
                left = runs_left(rule, row.fired)
                jobs = [(job_for(row, rule, fire, now, last=left is not None and i + 1 == left), fire)
                        for i, fire in enumerate(decided.fires)]
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                log.error("schedule %r: %s; it stays stopped until it is updated", row.name, message)
                firings.append(Firing(schedule_id=row.id, version=row.version, expected=row.next_fire_at,
                                      next_fire_at=None, error=message[:2000]))
                continue
            firings.append(Firing(schedule_id=row.id, version=row.version, expected=row.next_fire_at,
                                  next_fire_at=decided.next_fire_at, jobs=jobs, skipped=decided.skipped))
            if jobs or decided.skipped:
                fired.append(_Fired(row, decided.fires, decided.skipped))
        return firings

    def _fire(self, row: ScheduleRow, now: datetime, looked: datetime | None) -> int:
        """One schedule on its own (the fallback when a batch fails), with its own compare-and-set."""
        rule = rule_for(row.rule)
        decided = plan(row, rule, now, looked=looked)
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
        self._report([_Fired(row, decided.fires, decided.skipped)], {row.id: ids})
        return len(ids)

    def _report(self, fired: list[_Fired], made: dict[int, list[int]]) -> None:
        observers = self.worker.observers
        ticks_logged = log.isEnabledFor(logging.INFO)
        for item in fired:
            row, ids = item.row, made.get(item.row.id, [])
            if observers and (ids or item.skipped):
                observers.schedule_fired(self.worker, row.name, len(ids), item.skipped)
            if item.skipped:
                log.info("schedule %r: skipped %d tick(s) (misfire=%s overlap=%s)", row.name, item.skipped,
                         row.misfire, row.overlap)
            if ticks_logged:
                for job_id, fire in zip(ids, item.fires, strict=False):
                    log.info("schedule %r: tick %s -> job %d %s", row.name, fire.isoformat(), job_id, row.kind)

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
