"""The operations API: every read and action an operator has, for every surface to call.

```python
admin = finejobs.Admin(queue)
page = admin.jobs(finejobs.JobFilter(state="failed", kind="dosage.alert"), limit=50)
admin.retry_matching(finejobs.JobFilter(state="failed", error="timeout"), dry_run=True)   # BulkResult
admin.pause(shard="district-3"); admin.paused(); admin.workers(); admin.stats()
```
The CLI, the web console, the REST API and the Django admin are thin views over these methods, so a fix or
a limit lands everywhere at once. Results are frozen dataclasses with ``to_json()``. Every query is bounded
and indexed (see finejobs.store.operations); bulk actions by filter run in batches of a few thousand,
each its own short transaction, and are written to the audit log with who asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from finejobs.errors import FinejobsError, InvalidJobOptions
from finejobs.filters import JobFilter
from finejobs.jobs import Job, JobState
from finejobs.limits import MAX_MESSAGE_CHARS, check_int, check_text
from finejobs.queue import Queue
from finejobs.schedule_ops import Schedules
from finejobs.sharding import validate_shard_name
from finejobs.store import AuditRow, JobStore, PauseRow, ShardInfo, WorkerRow

T = TypeVar("T")

PAGE_LIMIT = 500  # jobs on one page at most
PAGE_SCAN = 2_000  # rows a page examines at most past its cursor
COUNT_CAP = 100_000  # rows a count examines at most (above: "at least")
BULK_BATCH = 2_000  # jobs changed per statement (and per transaction) by a bulk action
STATS_TTL = 3.0  # seconds a stats() result is reused
WORKER_GONE_AFTER = timedelta(seconds=30)  # a registry row not refreshed for this long: the worker is gone


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class JobPage:
    """One page of ``jobs()``: newest first; pass ``next_cursor`` for the next (None: no more)."""

    jobs: tuple[Job, ...]
    next_cursor: str | None
    examined: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"jobs": [j.to_json() for j in self.jobs], "next_cursor": self.next_cursor, "examined": self.examined}


@dataclass(frozen=True)
class Count:
    """How many jobs match a filter; ``at_least``: the count stopped at its cap."""

    count: int
    at_least: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "at_least": self.at_least}


@dataclass(frozen=True)
class BulkResult:
    """What a bulk action did (or, with ``dry_run``, would touch: ``matched`` only)."""

    action: str
    filter: JobFilter
    matched: int
    changed: int
    dry_run: bool
    at_least: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "filter": self.filter.to_json(), "matched": self.matched,
                "changed": self.changed, "dry_run": self.dry_run, "at_least": self.at_least}


@dataclass(frozen=True)
class Pause:
    """A paused kind, shard, or kind within a shard (None: any)."""

    kind: str | None
    shard: str | None
    paused_at: datetime
    paused_by: str | None = None
    reason: str | None = None

    @classmethod
    def from_row(cls, row: PauseRow) -> Pause:
        return cls(row.kind, row.shard, row.paused_at, row.paused_by, row.reason)

    def describe(self) -> str:
        if self.kind and self.shard:
            return f"kind {self.kind} in shard {self.shard}"
        return f"kind {self.kind}" if self.kind else f"shard {self.shard}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "shard": self.shard, "paused_at": _ts(self.paused_at),
                "paused_by": self.paused_by, "reason": self.reason}


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as its registry row shows it; ``alive`` is False once it stopped refreshing the row."""

    id: str
    host: str
    pid: int
    version: str
    database: str | None
    shards: tuple[str, ...] | None
    kinds: tuple[str, ...]
    concurrency: int
    started_at: datetime
    seen_at: datetime
    in_flight: int
    counters: dict[str, int]
    alive: bool
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: WorkerRow, *, now: datetime) -> WorkerInfo:
        return cls(id=row.id, host=row.host, pid=row.pid, version=row.version, database=row.database,
                   shards=tuple(row.shards) if row.shards is not None else None, kinds=tuple(row.kinds),
                   concurrency=row.concurrency, started_at=row.started_at, seen_at=row.seen_at,
                   in_flight=row.in_flight, counters=dict(row.counters), alive=now - row.seen_at < WORKER_GONE_AFTER,
                   info=dict(row.info))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid, "version": self.version,
                "database": self.database, "shards": list(self.shards) if self.shards is not None else None,
                "kinds": list(self.kinds), "concurrency": self.concurrency, "started_at": _ts(self.started_at),
                "seen_at": _ts(self.seen_at), "in_flight": self.in_flight, "counters": self.counters,
                "alive": self.alive, "info": self.info}


@dataclass(frozen=True)
class Overview:
    """Counts by state, kind and shard, lag (age of the oldest job that may run) and expiring jobs per
    shard, and the pauses. Finished states are counted up to a cap each (``capped`` says if one stopped)."""

    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    by_shard: dict[str, dict[str, int]]
    lag_seconds: dict[str, float]
    expiring_soon: dict[str, int]
    paused: tuple[Pause, ...]
    capped: bool
    at: datetime

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "by_state": self.by_state, "by_kind": self.by_kind, "by_shard": self.by_shard,
                "lag_seconds": self.lag_seconds, "expiring_soon": self.expiring_soon,
                "paused": [p.to_json() for p in self.paused], "capped": self.capped, "at": _ts(self.at)}


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: dict[str, Any]
    count: int | None
    detail: str | None

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEntry:
        return cls(row.id, row.at, row.actor, row.action, dict(row.target), row.count, row.detail)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": _ts(self.at), "actor": self.actor, "action": self.action,
                "target": self.target, "count": self.count, "detail": self.detail}


class Admin:
    """Operations on a queue's jobs, schedules, shards, pauses and workers (every database of its shard
    map). ``actor`` names who acts, for the audit log (a surface passes its user)."""

    def __init__(self, queue: Queue, *, actor: str = "api") -> None:
        self.queue = queue
        self.actor = actor
        self._cache: dict[str, tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()

    def as_actor(self, actor: str) -> Admin:
        """The same operations, recorded in the audit log as done by ``actor``."""
        other = Admin(self.queue, actor=check_text("actor", actor, max_chars=200))
        other._cache, other._cache_lock = self._cache, self._cache_lock
        return other

    @property
    def _now(self) -> datetime:
        return self.queue.clock()

    def _stores(self, filt: JobFilter) -> list[tuple[str, JobStore]]:
        if filt.database is not None:
            if filt.database not in self.queue.databases:
                raise InvalidJobOptions(f"database: {filt.database!r} is not in the shard map "
                                        f"({', '.join(self.queue.databases)})")
            return [(filt.database, self.queue.store_of(filt.database))]
        if filt.shard is not None:
            name = self.queue.shard_map.database_for(filt.shard)
            return [(name, self.queue.store_of(name))]
        return [(name, self.queue.store_of(name)) for name in self.queue.databases]

    def _schedule_id(self, store: JobStore, filt: JobFilter) -> int | None:
        return None if filt.schedule is None else store.schedule_id_of(name=filt.schedule)

    # ---------------------------------------------------------------- reading jobs

    def jobs(self, filt: JobFilter | None = None, *, cursor: str | None = None, limit: int = 50) -> JobPage:
        """A page of matching jobs, newest first (keyset pagination: never OFFSET)."""
        filt = filt or JobFilter()
        check_int("limit", limit, 1, PAGE_LIMIT)
        stores = self._stores(filt)
        position, before = _parse_cursor(cursor, len(stores))
        jobs: list[Job] = []
        examined = 0
        while position < len(stores) and len(jobs) < limit:
            _, store = stores[position]
            page = store.job_page(filt=filt, now=self._now, before=before, limit=limit - len(jobs), scan=PAGE_SCAN,
                                  schedule_id=self._schedule_id(store, filt))
            jobs += page.jobs
            examined += page.examined
            if page.next_before is not None:
                return JobPage(tuple(jobs), f"{position}:{page.next_before}", examined)
            position, before = position + 1, None
        more = position < len(stores)
        return JobPage(tuple(jobs), f"{position}:" if more else None, examined)

    def job(self, job_id: int, *, database: str | None = None) -> Job:
        return self.queue.get(_job_id(job_id), database=database)

    def count(self, filt: JobFilter | None = None) -> Count:
        """How many jobs match (each database examines at most COUNT_CAP rows)."""
        filt = filt or JobFilter()
        total, at_least = 0, False
        for _, store in self._stores(filt):
            n, more = store.job_count(filt=filt, now=self._now, cap=COUNT_CAP,
                                      schedule_id=self._schedule_id(store, filt))
            total, at_least = total + n, at_least or more
        return Count(total, at_least)

    # ---------------------------------------------------------------- acting on one job

    def retry(self, job_id: int, *, database: str | None = None) -> Job:
        job = self.queue.retry(_job_id(job_id), database=database)
        self._audit("retry", {"job": job.id}, 1)
        return job

    def cancel(self, job_id: int, reason: str = "cancelled by operator", *, database: str | None = None) -> Job:
        job = self.queue.cancel(_job_id(job_id), reason, database=database)
        self._audit("cancel", {"job": job.id}, 1, reason)
        return job

    def delete(self, job_id: int, *, database: str | None = None) -> Job:
        """Delete a job that is not running (its record is gone: prefer cancel for unfinished work)."""
        job = self.job(job_id, database=database)
        store = self.queue.store_of(database) if database else self.queue.store_for(job.shard)
        deleted = store.job_delete(job_id=job.id, now=self._now)
        if deleted is None:
            raise FinejobsError(f"cannot delete job {job.id}: it is running (cancel it first)")
        self._audit("delete", {"job": job.id}, 1)
        return deleted

    # ---------------------------------------------------------------- acting on every job matching a filter

    def retry_matching(self, filt: JobFilter, *, dry_run: bool = False) -> BulkResult:
        """Retry every failed, expired or cancelled job matching ``filt`` (not just a page)."""
        return self._bulk("retry", filt, dry_run=dry_run)

    def cancel_matching(self, filt: JobFilter, reason: str = "cancelled by operator", *,
                        dry_run: bool = False) -> BulkResult:
        """Cancel every waiting or running job matching ``filt``."""
        check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        return self._bulk("cancel", filt, dry_run=dry_run, reason=reason)

    def delete_matching(self, filt: JobFilter, *, dry_run: bool = False) -> BulkResult:
        """Delete every job matching ``filt`` that is not running."""
        return self._bulk("delete", filt, dry_run=dry_run)

    def _bulk(self, action: str, filt: JobFilter, *, dry_run: bool, reason: str = "") -> BulkResult:
        if not isinstance(filt, JobFilter):
            raise InvalidJobOptions(f"filter must be a finejobs.JobFilter, got {type(filt).__name__}")
        states = {"retry": ("failed", "expired", "cancelled"), "cancel": ("available", "scheduled", "running"),
                  "delete": ("available", "scheduled", "succeeded", "failed", "expired", "cancelled")}[action]
        if filt.state is not None and filt.state.value not in states:
            raise InvalidJobOptions(f"state: {action} applies to {', '.join(states)} jobs, not {filt.state.value}")
        if dry_run:
            counted = self.count(filt)
            return BulkResult(action, filt, counted.count, 0, True, counted.at_least)
        changed = 0
        for _, store in self._stores(filt):
            schedule_id = self._schedule_id(store, filt)
            after = 0
            while True:
                done, highest = store.job_bulk(action=action, filt=filt, now=self._now, after=after,
                                               limit=BULK_BATCH, reason=reason, schedule_id=schedule_id)
                changed += done
                if highest is None:
                    break
                after = highest
        self._invalidate()
        self._audit(f"{action} matching", {"filter": filt.to_json()}, changed, reason or None)
        return BulkResult(action, filt, changed, changed, False)

    # ---------------------------------------------------------------- counts for pages and metrics

    def stats(self, *, fresh: bool = False) -> Overview:
        """Counts by state, kind and shard, lag and expiring jobs per shard, pauses: cached STATS_TTL seconds."""
        return self._cached("stats", self._stats, fresh=fresh)

    def _stats(self) -> Overview:
        now = self._now
        by_state: dict[str, int] = {s.value: 0 for s in JobState}
        by_kind: dict[str, dict[str, int]] = {}
        by_shard: dict[str, dict[str, int]] = {}
        lag: dict[str, float] = {}
        expiring: dict[str, int] = {}
        capped = False
        for name in self.queue.databases:
            store = self.queue.store_of(name)
            rows, more = store.job_counts(now=now, cap=COUNT_CAP)
            capped = capped or more
            for state, kind, shard, n in rows:
                by_state[state] = by_state.get(state, 0) + n
                for group, key in ((by_kind, kind), (by_shard, shard)):
                    counts = group.setdefault(key, {})
                    counts[state] = counts.get(state, 0) + n
            lag.update(store.job_lag(now=now))
            for shard, n in store.job_expiring(now=now, until=now + timedelta(minutes=15)).items():
                expiring[shard] = expiring.get(shard, 0) + n
        return Overview(by_state, by_kind, by_shard, lag, expiring, tuple(self.paused()), capped, now)

    def _cached(self, key: str, compute: Callable[[], T], *, fresh: bool) -> T:
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and not fresh and time.monotonic() - hit[0] < STATS_TTL:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._cache_lock:
            self._cache[key] = (time.monotonic(), value)
        return value

    def _invalidate(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # ---------------------------------------------------------------- pause and resume

    def pause(self, *, kind: str | None = None, shard: str | None = None, reason: str | None = None) -> Pause:
        """Stop workers claiming a kind, a shard, or a kind within a shard (within about a second, in every
        worker process; running jobs finish). Stored: it survives restarts. Pausing twice is harmless."""
        kind, shard = _target(kind, shard)
        if reason is not None:
            check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        for name in self._databases_for(shard):
            self.queue.store_of(name).pause_add(kind=kind, shard=shard, now=self._now, by=self.actor, reason=reason)
        self._invalidate()
        self._audit("pause", {"kind": kind, "shard": shard}, None, reason)
        found = [p for p in self.paused() if p.kind == kind and p.shard == shard]
        return found[0]

    def resume(self, *, kind: str | None = None, shard: str | None = None) -> bool:
        """Let workers claim it again; False if it was not paused."""
        kind, shard = _target(kind, shard)
        removed = False
        for name in self._databases_for(shard):
            removed = self.queue.store_of(name).pause_remove(kind=kind, shard=shard) or removed
        self._invalidate()
        if removed:
            self._audit("resume", {"kind": kind, "shard": shard}, None)
        return removed

    def paused(self) -> list[Pause]:
        """Every pause, in every database (a kind paused everywhere shows once)."""
        found: dict[tuple[str | None, str | None], Pause] = {}
        for name in self.queue.databases:
            for row in self.queue.store_of(name).pause_list():
                found.setdefault((row.kind, row.shard), Pause.from_row(row))
        return sorted(found.values(), key=lambda p: (p.kind or "", p.shard or ""))

    def _databases_for(self, shard: str | None) -> list[str]:
        return self.queue.databases if shard is None else [self.queue.shard_map.database_for(shard)]

    # ---------------------------------------------------------------- workers, schedules, shards, audit

    def workers(self) -> list[WorkerInfo]:
        """The worker registry: alive ones first, then those gone (not refreshed for WORKER_GONE_AFTER)."""
        now = self._now
        found = [WorkerInfo.from_row(row, now=now) for name in self.queue.databases
                 for row in self.queue.store_of(name).worker_list()]
        return sorted(found, key=lambda w: (not w.alive, w.started_at, w.id))

    @property
    def schedules(self) -> Schedules:
        """Schedule operations: list, get, add, update, delete, pause, resume, run_now, skip_next, ..."""
        return self.queue.schedules

    def shards(self) -> list[ShardInfo]:
        """Every shard with jobs or a partition, in every database, with counts by state."""
        return [info for name in self.queue.databases for info in self.queue.store_of(name).shard_list(now=self._now)]

    def audit(self, *, before: int | None = None, limit: int = 50) -> list[AuditEntry]:
        """The newest entries of the default database's audit log."""
        check_int("limit", limit, 1, PAGE_LIMIT)
        return [AuditEntry.from_row(r) for r in self.queue.store.audit_list(before=before, limit=limit)]

    def _audit(self, action: str, target: dict[str, Any], count: int | None, detail: str | None = None) -> None:
        self.queue.store.audit_add(actor=self.actor, action=action, target=target, count=count, detail=detail,
                                   now=self._now)


def _target(kind: str | None, shard: str | None) -> tuple[str | None, str | None]:
    if kind is None and shard is None:
        raise InvalidJobOptions("pause or resume what? name a kind, a shard, or both")
    if kind is not None:
        check_text("kind", kind, max_chars=200)
    if shard is not None:
        validate_shard_name(shard)
    return kind, shard


def _job_id(value: Any) -> int:
    return check_int("job id", value, 1, 2**63 - 1)


def _parse_cursor(cursor: str | None, databases: int) -> tuple[int, int | None]:
    """A cursor is ``"<database position>:<id>"`` (the id empty at a database's start)."""
    if cursor is None:
        return 0, None
    if not isinstance(cursor, str) or len(cursor) > 40:
        raise InvalidJobOptions("cursor: not a cursor from a previous page")
    position, _, before = cursor.partition(":")
    try:
        where, below = int(position), (int(before) if before else None)
    except ValueError:
        raise InvalidJobOptions(f"cursor: not a cursor from a previous page: {cursor!r}") from None
    if not 0 <= where <= databases or (below is not None and below < 1):
        raise InvalidJobOptions(f"cursor: not a cursor from a previous page: {cursor!r}")
    return where, below

