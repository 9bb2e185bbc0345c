"""Schedule operations, from Python: ``queue.schedules.list()``, ``.add(...)``, ``.pause(name)``...

The CLI (``finejobs schedules ...``) calls these same methods.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from finejobs.errors import ConfigurationError, FinejobsError
from finejobs.scheduler import (
    ScheduleNotFound,
    declare_all,
    job_for,
    make_spec,
    outcome_of,
    rule_for,
    spec_from_row,
    status_of,
)
from finejobs.schedules import Adaptive, Rule, first_fire, next_fire, runs_left
from finejobs.store import ScheduleRow, ScheduleRunRow

if TYPE_CHECKING:
    from finejobs.kinds import JobKind
    from finejobs.queue import Queue

SORT_KEYS = ("name", "kind", "next", "last", "status", "runs", "rule")
_CAS_TRIES = 5
RUNS_LEFT_CAP = 1_000  # runs_left counts this many ticks at most (each one computed: lists stay cheap)
_UPDATABLE = ("description", "kind", "rule", "payload", "shard", "priority", "max_attempts", "start", "end",
              "misfire", "misfire_limit", "misfire_grace", "overlap", "expires_in")


@dataclass(frozen=True)
class ScheduleRun:
    """One run of a schedule: the job one tick made."""

    job_id: int
    fire_at: datetime | None
    state: str
    outcome: str | None  # success, idle, error or timeout once finished
    started_at: datetime | None
    finished_at: datetime | None
    duration: timedelta | None
    error: str | None

    @classmethod
    def from_row(cls, row: ScheduleRunRow) -> ScheduleRun:
        duration = (row.finished_at - row.started_at) if row.finished_at and row.started_at else None
        return cls(job_id=row.job_id, fire_at=row.fire_at, state=row.state,
                   outcome=outcome_of(row.state, row.result), started_at=row.started_at,
                   finished_at=row.finished_at, duration=duration, error=row.error)

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "fire_at": _iso(self.fire_at), "state": self.state, "outcome": self.outcome,
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
                "duration_seconds": self.duration.total_seconds() if self.duration is not None else None,
                "error": self.error}


@dataclass(frozen=True)
class Schedule:
    """A schedule as stored, with its rule in words, its status and what its last run did."""

    name: str
    description: str
    kind: str
    payload: dict[str, Any]
    shard: str
    priority: int
    max_attempts: int
    rule: Rule | None
    rule_text: str
    timezone: str
    start: datetime | None
    end: datetime | None
    paused: bool
    misfire: str
    misfire_limit: int
    misfire_grace: timedelta
    overlap: str
    expires_in: timedelta | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_state: str | None
    last_outcome: str | None
    runs: int
    skipped: int
    runs_left: int | None  # None when neither the rule nor an end bounds it; capped at RUNS_LEFT_CAP
    status: str
    source: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    fired: int = 0  # the ticks that made a run: what the rule's count counts (run-now runs are not ticks)

    @classmethod
    def from_row(cls, row: ScheduleRow) -> Schedule:
        try:
            rule: Rule | None = rule_for(row.rule)
            assert rule is not None
            words = rule.describe()
        except Exception as exc:  # a rule this finejobs cannot read: shown, and the schedule fails
            rule, words = None, f"unreadable rule {row.rule} ({exc})"
        return cls(
            name=row.name, description=row.description, kind=row.kind, payload=dict(row.payload), shard=row.shard,
            priority=row.priority, max_attempts=row.max_attempts, rule=rule, rule_text=words,
            timezone=row.timezone, start=row.start_at, end=row.end_at, paused=row.paused, misfire=row.misfire,
            misfire_limit=row.misfire_limit, misfire_grace=row.misfire_grace, overlap=row.overlap,
            expires_in=row.expires_in, next_fire_at=row.next_fire_at, last_fire_at=row.last_fire_at,
            last_state=row.last_state, last_outcome=outcome_of(row.last_state, row.last_result),
            runs=row.runs, skipped=row.skipped, runs_left=_runs_left(row, rule),
            status="failed" if rule is None else status_of(row), source=row.source, error=row.last_error,
            created_at=row.created_at, updated_at=row.updated_at, fired=row.fired,
        )

    def next_fires(self, n: int = 10) -> list[datetime]:
        """The next ``n`` fire times from next_fire_at (an adaptive rule's assume successful runs)."""
        if self.rule is None or self.next_fire_at is None:
            return []
        left = runs_left(self.rule, self.fired)
        n = n if left is None else min(n, left)
        fires = [self.next_fire_at] if n > 0 else []
        while 0 < len(fires) < n:
            following = next_fire(self.rule, fires[-1], start=self.start, end=self.end)
            if following is None:
                break
            fires.append(following)
        return fires

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "kind": self.kind, "payload": self.payload,
            "shard": self.shard, "priority": self.priority, "max_attempts": self.max_attempts,
            "rule": self.rule.to_spec() if self.rule is not None else None, "rule_text": self.rule_text,
            "timezone": self.timezone, "start": _iso(self.start), "end": _iso(self.end), "paused": self.paused,
            "misfire": self.misfire, "misfire_limit": self.misfire_limit,
            "misfire_grace_seconds": self.misfire_grace.total_seconds(), "overlap": self.overlap,
            "expires_in_seconds": self.expires_in.total_seconds() if self.expires_in is not None else None,
            "next_fire_at": _iso(self.next_fire_at), "last_fire_at": _iso(self.last_fire_at),
            "last_state": self.last_state, "last_outcome": self.last_outcome, "runs": self.runs,
            "skipped": self.skipped, "fired": self.fired, "runs_left": self.runs_left, "status": self.status,
            "source": self.source,
            "error": self.error, "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _runs_left(row: ScheduleRow, rule: Rule | None) -> int | None:
    if rule is None or isinstance(rule, Adaptive) or not (rule.bounded or row.end_at is not None):
        return None
    counted = runs_left(rule, row.fired)
    cap = RUNS_LEFT_CAP if counted is None else min(counted, RUNS_LEFT_CAP)
    left, tick = 0, row.next_fire_at
    while tick is not None and left < cap:
        left += 1
        tick = next_fire(rule, tick, start=row.start_at, end=row.end_at)
    return left


def _sort_key(column: str) -> Callable[[Schedule], Any]:
    keys: dict[str, Callable[[Schedule], Any]] = {
        "name": lambda s: s.name,
        "kind": lambda s: (s.kind, s.name),
        "next": lambda s: (s.next_fire_at is None, s.next_fire_at.timestamp() if s.next_fire_at else 0, s.name),
        "last": lambda s: (s.last_fire_at is None, s.last_fire_at.timestamp() if s.last_fire_at else 0, s.name),
        "status": lambda s: (s.status, s.name),
        "runs": lambda s: (s.runs, s.name),
        "rule": lambda s: (s.rule_text, s.name),
    }
    if column not in keys:
        raise ValueError(f"cannot sort by {column!r}: use one of {', '.join(SORT_KEYS)}")
    return keys[column]


class Schedules:
    """Operations on the schedule rows of a queue's database (``queue.schedules``)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    @property
    def _now(self) -> datetime:
        return self.queue.clock()

    def _row(self, name: str) -> ScheduleRow:
        row = self.queue.store.schedule_get(name=name, now=self._now)
        if row is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return row

    # ---------------------------------------------------------------- reading

    def list(self, *, search: str | None = None, sort: str = "name", descending: bool = False) -> list[Schedule]:
        """Every schedule (name, description or kind containing ``search``), sorted by a column of SORT_KEYS."""
        key = _sort_key(sort)
        found = [Schedule.from_row(r) for r in self.queue.store.schedule_list(now=self._now, search=search)]
        return sorted(found, key=key, reverse=descending)

    def get(self, name: str) -> Schedule:
        return Schedule.from_row(self._row(name))

    def runs(self, name: str, *, limit: int = 10) -> builtins.list[ScheduleRun]:
        """The schedule's recent runs, newest first."""
        rows = self.queue.store.schedule_runs(schedule_id=self._row(name).id, limit=limit)
        return [ScheduleRun.from_row(r) for r in rows]

    # ---------------------------------------------------------------- writing

    def add(self, name: str, kind: str | JobKind[Any, Any], rule: Rule, *, payload: Any = None,
            paused: bool = False, **options: Any) -> Schedule:
        """Store a new schedule (FinejobsError if the name is taken). Options as for ``queue.schedule``."""
        spec = make_spec(self.queue, name, kind, rule, payload=payload, **options)
        self._check_home(spec.shard)
        now = self._now
        values = {**spec.values(now=now), "paused": paused, "source": "runtime"}
        if self.queue.store.schedule_insert(values=values, now=now) is None:
            raise FinejobsError(f"a schedule named {name!r} already exists (use update)")
        return self.get(name)

    def update(self, name: str, **changes: Any) -> Schedule:
        """Change some of a schedule's options; a new rule, start or end recomputes the next fire."""
        unknown = set(changes) - set(_UPDATABLE)
        if unknown:
            raise TypeError(f"cannot update {', '.join(sorted(unknown))}; updatable: {', '.join(_UPDATABLE)}")
        for _ in range(_CAS_TRIES):
            row = self._row(name)
            current = spec_from_row(row, changes.get("rule"))
            merged = {k: getattr(current, k) for k in _UPDATABLE}
            merged.update(changes)
            spec = make_spec(self.queue, name, merged.pop("kind"), merged.pop("rule"), **merged)
            self._check_home(spec.shard)
            values = spec.values(now=self._now)
            values.pop("name")
            retimed = any(k in changes for k in ("rule", "start", "end")) or row.last_error is not None
            fired = row.fired
            if (spec.rule.to_spec().get("start"), spec.start) != (row.rule.get("start"), row.start_at):
                fired = values["fired"] = 0  # a new start begins a new series: its count starts again
            if not retimed:
                values.pop("next_fire_at")
            elif runs_left(spec.rule, fired) == 0:
                values["next_fire_at"] = None  # the (new) count is already used up
            values["last_error"] = None
            if self.queue.store.schedule_update(schedule_id=row.id, version=row.version, values=values,
                                                now=self._now):
                return self.get(name)
        raise FinejobsError(f"schedule {name!r} kept changing while it was being updated; try again")

    def _check_home(self, shard: str) -> None:
        """These operations work in the default database; a tick's job must land where its shard lives."""
        shard_map = self.queue.shard_map
        home = shard_map.database_for(shard)
        if home != shard_map.default:
            raise ConfigurationError(
                f"schedule operations work in the default database {shard_map.default!r}, but shard {shard!r} "
                f"lives in database {home!r}: declare this schedule in code (queue.schedule(..., shard={shard!r})); "
                "the workers of its database upsert it there"
            )

    def delete(self, name: str) -> None:
        """Delete the schedule; the jobs it already made stay."""
        if not self.queue.store.schedule_delete(name=name):
            raise ScheduleNotFound(f"no schedule named {name!r}")

    def pause(self, name: str) -> Schedule:
        row = self._row(name)
        self.queue.store.schedule_update(schedule_id=row.id, version=None, values={"paused": True},
                                         now=self._now)
        return self.get(name)

    def resume(self, name: str) -> Schedule:
        """Resume; ticks that passed while it was paused are not run (the next fire is the next one due)."""
        for _ in range(_CAS_TRIES):
            row = self._row(name)
            values: dict[str, Any] = {"paused": False, "next_fire_at": self._resumed_next(row)}
            if self.queue.store.schedule_update(schedule_id=row.id, version=row.version, values=values,
                                                now=self._now):
                return self.get(name)
        raise FinejobsError(f"schedule {name!r} kept changing while it was being resumed; try again")

    def _resumed_next(self, row: ScheduleRow) -> datetime | None:
        """The next tick after a pause: the runs a count allows are kept (ticks that passed while paused
        did not run, so they do not count)."""
        now = self._now
        if row.next_fire_at is not None and row.next_fire_at >= now:
            return row.next_fire_at
        rule = rule_for(row.rule)
        if isinstance(rule, Adaptive):
            return now if row.next_fire_at is not None else None
        if runs_left(rule, row.fired) == 0:
            return None
        return first_fire(rule, now=now, start=row.start_at, end=row.end_at)

    def pause_all(self, *, kind: str | None = None) -> builtins.list[str]:
        """Pause every schedule (of ``kind``); returns the names paused."""
        return self.queue.store.schedule_set_paused_all(paused=True, now=self._now, kind=kind)

    def resume_all(self, *, kind: str | None = None) -> builtins.list[str]:
        """Resume every paused schedule (of ``kind``); returns the names resumed."""
        paused = [r.name for r in self.queue.store.schedule_list(now=self._now)
                  if r.paused and (kind is None or r.kind == kind)]
        for name in paused:
            self.resume(name)
        return paused

    def run_now(self, name: str, *, force: bool = False) -> int:
        """Make one run now, besides the ticks; returns its job id.

        Refused while a run is unfinished (unless the overlap policy is ``allow``, or ``force``).
        An adaptive schedule then waits for this run before its next one.
        """
        for _ in range(_CAS_TRIES):
            row = self._row(name)
            if row.unfinished and row.overlap != "allow" and not force:
                raise FinejobsError(f"schedule {name!r} has a run that is not finished (overlap={row.overlap}); "
                                    "pass force to run anyway")
            rule, now = rule_for(row.rule), self._now
            job = job_for(row, rule, now, now)
            if row.expires_in is None:
                job = replace(job, expires_at=None)
            upcoming = None if isinstance(rule, Adaptive) else row.next_fire_at
            ids = self.queue.store.schedule_fire(schedule_id=row.id, version=row.version, expected=row.next_fire_at,
                                                 next_fire_at=upcoming, jobs=[(job, now)], skipped=0, now=now)
            if ids:
                return ids[0]
            if ids == []:
                raise FinejobsError(f"schedule {name!r} already has a run for {now.isoformat()}")
        raise FinejobsError(f"schedule {name!r} kept changing; try again")

    def skip_next(self, name: str) -> Schedule:
        """Skip the next tick: the one after it becomes the next."""
        for _ in range(_CAS_TRIES):
            row = self._row(name)
            if row.next_fire_at is None:
                raise FinejobsError(f"schedule {name!r} has no next tick to skip")
            rule = rule_for(row.rule)
            upcoming = next_fire(rule, row.next_fire_at, start=row.start_at, end=row.end_at)
            done = self.queue.store.schedule_fire(schedule_id=row.id, version=row.version,
                                                  expected=row.next_fire_at, next_fire_at=upcoming, jobs=[],
                                                  skipped=1, now=self._now)
            if done is not None:
                return self.get(name)
        raise FinejobsError(f"schedule {name!r} kept changing; try again")

    def sync(self) -> builtins.list[str]:
        """Upsert the schedules declared in code now (a worker does this when it starts)."""
        return declare_all(self.queue, now=self._now)
