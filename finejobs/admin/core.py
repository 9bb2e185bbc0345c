"""The Admin class: every read and action an operator has (see finejobs.admin)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from finejobs.admin.groups import GroupOps
from finejobs.admin.pipelines import PipelineOps
from finejobs.admin.results import (
    Activity,
    AuditEntry,
    BulkResult,
    Count,
    JobPage,
    KindInfo,
    Overview,
    Pause,
    Shard,
    WorkerInfo,
)
from finejobs.admin.schedules import AuditedSchedules
from finejobs.errors import FinejobsError, InvalidJobOptions, JobNotFound
from finejobs.filters import JobFilter, cursor_key, make_cursor, read_cursor
from finejobs.jobs import Job, JobState
from finejobs.limits import MAX_MESSAGE_CHARS, check_int, check_text
from finejobs.queue import Queue
from finejobs.sharding import validate_shard_name
from finejobs.store import DEFAULT_PARTITION, JobStore
from finejobs.store.operations import ACTION_STATES

T = TypeVar("T")

PAGE_LIMIT = 500  # jobs on one page at most
PAGE_SCAN = 2_000  # rows a page examines at most past its cursor (in each database)
COUNT_CAP = 50_000  # rows a count (and a dry run) examines at most in each database (above: "at least")
ERROR_COUNT_CAP = 10_000  # ... when the filter's error text must be looked for in each row's last error
STATS_CAP = 20_000  # jobs stats() and shards() count at most in each stored state and database
BULK_BATCH = 2_000  # jobs changed per statement (and per transaction) by a bulk action
BULK_SCAN = 5_000  # rows one batch of a bulk action examines at most
ACTIVITY_CAP = 20_000  # finished jobs of one state activity() reads at most
ACTIVITY_MINUTES = 1_440  # the longest window activity() shows
STATS_TTL = 3.0  # seconds a stats() result is reused
EXPIRING_WITHIN = timedelta(minutes=15)  # stats(): waiting jobs that expire this soon, per shard
AUDIT_ACTOR_CHARS = 200


class Admin:
    """Operations on a queue's jobs, schedules, shards, pauses and workers (every database of its shard
    map). ``actor`` names who acts, for the audit log (a surface passes its user).

    Bad input (a limit out of range, a cursor this Admin did not make for this filter, a filter that is
    not a JobFilter) raises a finejobs error (InvalidJobOptions) before anything is read or written."""

    def __init__(self, queue: Queue, *, actor: str = "api") -> None:
        if not isinstance(queue, Queue):
            raise InvalidJobOptions(f"Admin needs a finejobs.Queue, got {type(queue).__name__}")
        self.queue = queue
        self.actor = check_text("actor", actor, max_chars=AUDIT_ACTOR_CHARS)
        self._cache: dict[str, tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()
        self._keys: dict[str, bytes] = {}

    def as_actor(self, actor: str) -> Admin:
        """The same operations, recorded in the audit log as done by ``actor``."""
        other = Admin(self.queue, actor=actor)
        other._cache, other._cache_lock, other._keys = self._cache, self._cache_lock, self._keys
        return other

    @property
    def _now(self) -> datetime:
        return self.queue.clock()

    def _stores(self, filt: JobFilter) -> list[tuple[str, JobStore]]:
        names = [self._database(filt.database)] if filt.database is not None else \
            [self.queue.shard_map.database_for(filt.shard)] if filt.shard is not None else self.queue.databases
        return [(name, self.queue.store_of(name)) for name in names]

    def _database(self, name: str) -> str:
        if name not in self.queue.databases:
            raise InvalidJobOptions(f"database: {str(name)[:80]!r} is not in the shard map "
                                    f"({', '.join(self.queue.databases)})")
        return name

    def _schedule_id(self, store: JobStore, filt: JobFilter) -> int | None:
        return None if filt.schedule is None else store.schedule_id_of(name=filt.schedule)

    # ---------------------------------------------------------------- reading jobs

    def jobs(self, filt: JobFilter | None = None, *, cursor: str | None = None, limit: int = 50) -> JobPage:
        """A page of matching jobs, newest first (keyset on the id, never OFFSET; database by database with a
        shard map). A page examines at most PAGE_SCAN rows (those the filter's state and shard select) per
        database, so it may hold fewer than ``limit`` jobs, even none, and a ``next_cursor``: follow it until
        None. Pages never repeat or skip a job; jobs newer than the first page are not shown by its cursors."""
        filt = _filter(filt)
        check_int("limit", limit, 1, PAGE_LIMIT)
        stores, key, now = self._stores(filt), self._cursor_key(), self._now
        position, before = (0, None) if cursor is None else read_cursor(key, filt, cursor, len(stores))
        jobs: list[Job] = []
        examined = 0
        while position < len(stores) and len(jobs) < limit:
            _, store = stores[position]
            page = store.job_page(filt=filt, now=now, before=before, limit=limit - len(jobs), scan=PAGE_SCAN,
                                  schedule_id=self._schedule_id(store, filt))
            jobs += page.jobs
            examined += page.examined
            if page.next_before is not None:
                return JobPage(tuple(jobs), make_cursor(key, filt, position, page.next_before), examined)
            position, before = position + 1, None
        more = position < len(stores)
        return JobPage(tuple(jobs), make_cursor(key, filt, position, None) if more else None, examined)

    def job(self, job_id: int, *, database: str | None = None) -> Job:
        """The job with this id (with a shard map: in ``database``, or the one database that has it)."""
        name = self._locate(_job_id(job_id), database)
        return self.queue.store_of(name).job_get(job_id=job_id, now=self._now)

    def count(self, filt: JobFilter | None = None) -> Count:
        """How many jobs match among the newest COUNT_CAP (ERROR_COUNT_CAP with an error text) per database
        that the filter's state selects; ``at_least``: that many were examined, there may be more."""
        return self._count(_filter(filt), None)

    def _count(self, filt: JobFilter, states: tuple[str, ...] | None) -> Count:
        total, at_least = 0, False
        now = self._now
        cap = COUNT_CAP if filt.error is None else ERROR_COUNT_CAP
        for _, store in self._stores(filt):
            n, more = store.job_count(filt=filt, now=now, cap=cap, schedule_id=self._schedule_id(store, filt),
                                      states=states)
            total, at_least = total + n, at_least or more
        return Count(total, at_least)

    # ---------------------------------------------------------------- kinds and enqueueing

    def kinds(self) -> list[KindInfo]:
        """The job kinds this queue declares (in code: a console knows the kinds of the app it serves)."""
        found = []
        for name in sorted(self.queue.kinds):
            kind = self.queue.kinds[name]
            routing = None if kind.shard_rule is None else str(getattr(kind.shard_rule, "describe", lambda: "")()
                                                                or type(kind.shard_rule).__name__)
            found.append(KindInfo(name, kind.shard, routing, kind.priority, kind.retry.max_attempts,
                                  None if kind.expires_in is None else kind.expires_in.total_seconds(),
                                  None if kind.timeout is None else kind.timeout.total_seconds(),
                                  kind.model.model_json_schema() if kind.model is not None else {}))
        return found

    def enqueue(self, kind: str, payload: Any, **options: Any) -> Job:
        """Enqueue a job of a declared kind (payload validated by its model; options as for ``enqueue``)."""
        job = self.queue.enqueue(kind, payload, **options)
        self._acted("enqueue", {"job": job.id, "kind": job.kind, "shard": job.shard}, 1)
        return job

    # ---------------------------------------------------------------- acting on one job

    def retry(self, job_id: int, *, database: str | None = None) -> Job:
        """Run a failed, expired or cancelled job again now, allowing one more attempt."""
        name = self._locate(_job_id(job_id), database)
        job = self.queue.store_of(name).job_retry(job_id=job_id, now=self._now)
        self._acted("retry", {"job": job.id, "database": name}, 1)
        return job

    def cancel(self, job_id: int, reason: str = "cancelled by operator", *, database: str | None = None) -> Job:
        """Cancel a waiting or running job (a running handler finishes, its outcome is then ignored)."""
        check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        name = self._locate(_job_id(job_id), database)
        job = self.queue.store_of(name).job_cancel(job_id=job_id, now=self._now, reason=reason)
        self._acted("cancel", {"job": job.id, "database": name}, 1, reason)
        return job

    def delete(self, job_id: int, *, database: str | None = None) -> Job:
        """Delete a job that is not running (prefer cancel for unfinished work); returns it as it was."""
        name = self._locate(_job_id(job_id), database)
        store = self.queue.store_of(name)
        deleted = store.job_delete(job_id=job_id, now=self._now)
        if deleted is None:
            current = store.job_get(job_id=job_id, now=self._now)  # raises JobNotFound if it is gone
            raise FinejobsError(f"cannot delete job {job_id}: it is {current.state.value} (cancel it first)")
        self._acted("delete", {"job": deleted.id, "database": name}, 1)
        return deleted

    def _locate(self, job_id: int, database: str | None) -> str:
        """The database holding a job: the one named, the only one, or the one of the shard map that has it."""
        if database is not None:
            return self._database(database)
        names = self.queue.databases
        if len(names) == 1:
            return names[0]
        holders = [name for name in names if self.queue.store_of(name).job_exists(job_id=job_id)]
        if len(holders) > 1:
            raise FinejobsError(f"job id {job_id} exists in databases {', '.join(holders)}: name one (database=)")
        if not holders:
            raise JobNotFound(f"no job with id {job_id} in databases {', '.join(names)}")
        return holders[0]

    # ---------------------------------------------------------------- acting on every job matching a filter

    def retry_matching(self, filt: JobFilter, *, dry_run: bool = False) -> BulkResult:
        """Retry every failed, expired or cancelled job matching ``filt`` (not just a page). A job whose
        unique_key an unfinished job now holds is left as it is (``matched - changed`` counts them)."""
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
        """Database by database, in batches (BULK_BATCH jobs, BULK_SCAN rows examined at most), each its own
        short transaction; then one audit entry."""
        filt = _filter(filt, required=True)
        if not isinstance(dry_run, bool):
            raise InvalidJobOptions(f"dry_run must be True or False, got {dry_run!r}"[:200])
        states = ACTION_STATES[action]
        allowed = [*(("scheduled",) if "available" in states else ()), *states]
        if filt.state is not None and filt.state.value not in allowed:
            raise InvalidJobOptions(f"state: {action} applies to {', '.join(allowed)} jobs, not {filt.state.value}")
        stores = self._stores(filt)
        if dry_run:
            counted = self._count(filt, states)
            return BulkResult(action, filt, counted.count, 0, True, counted.at_least)
        now = self._now
        matched = changed = 0
        for _, store in stores:
            schedule_id = self._schedule_id(store, filt)
            after: int | None = 0
            while after is not None:
                batch = store.job_bulk(action=action, filt=filt, now=now, after=after, limit=BULK_BATCH,
                                       scan=BULK_SCAN, reason=reason, schedule_id=schedule_id)
                matched, changed, after = matched + batch.matched, changed + batch.changed, batch.next_after
        self._acted(f"{action} matching", {"filter": filt.to_json()}, changed, reason or None)
        return BulkResult(action, filt, matched, changed, False)

    # ---------------------------------------------------------------- counts for pages and metrics

    def stats(self, *, fresh: bool = False) -> Overview:
        """Counts by state, kind and shard, lag and expiring jobs per shard, pauses: reused for STATS_TTL
        seconds (``fresh=True`` counts again; this Admin's own actions also drop the cached counts)."""
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
            rows, more = store.job_counts(now=now, cap=STATS_CAP)
            capped = capped or more
            for state, kind, shard, n in rows:
                by_state[state] += n
                _tally(by_kind, kind, state, n)
                _tally(by_shard, shard, state, n)
            for shard, seconds in store.job_lag(now=now).items():
                lag[shard] = max(lag.get(shard, 0.0), seconds)
            for shard, n in store.job_expiring(now=now, until=now + EXPIRING_WITHIN, cap=COUNT_CAP).items():
                expiring[shard] = expiring.get(shard, 0) + n
        return Overview(by_state, by_kind, by_shard, lag, expiring, tuple(self.paused()), capped, now)

    def activity(self, *, minutes: int = 60, fresh: bool = False) -> Activity:
        """Throughput and lag per minute over the last ``minutes`` (reused for STATS_TTL seconds)."""
        check_int("minutes", minutes, 1, ACTIVITY_MINUTES)
        return self._cached(f"activity:{minutes}", lambda: self._activity(minutes), fresh=fresh)

    def _activity(self, minutes: int) -> Activity:
        now = self._now
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        since = end - timedelta(minutes=minutes)
        counts = {"succeeded": [0] * minutes, "failed": [0] * minutes}
        lag: list[float | None] = [None] * minutes
        capped = False
        for name in self.queue.databases:
            found, more = self.queue.store_of(name).job_activity(now=now, since=since, cap=ACTIVITY_CAP)
            capped = capped or more
            for state, rows in found.items():
                for row in rows:
                    if 0 <= row.minute < minutes:
                        counts[state][row.minute] += row.jobs
                        if row.wait is not None:
                            lag[row.minute] = max(lag[row.minute] or 0.0, row.wait)
        return Activity(since, tuple(counts["succeeded"]), tuple(counts["failed"]), tuple(lag), capped, now)

    def _cached(self, key: str, compute: Callable[[], T], *, fresh: bool) -> T:
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and not fresh and time.monotonic() - hit[0] < STATS_TTL:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._cache_lock:
            self._cache[key] = (time.monotonic(), value)
        return value

    # ---------------------------------------------------------------- pause and resume

    def pause(self, *, kind: str | None = None, shard: str | None = None, reason: str | None = None) -> Pause:
        """Stop workers claiming a kind, a shard, or a kind within a shard (within about a second, in every
        worker process; running jobs finish). Stored: it survives restarts. Twice is harmless (the first stays)."""
        kind, shard = _target(kind, shard)
        if reason is not None:
            check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        added = 0
        for name in self._databases_for(shard):
            added += self.queue.store_of(name).pause_add(kind=kind, shard=shard, now=self._now, by=self.actor,
                                                         reason=reason)
        self._acted("pause", {"kind": kind, "shard": shard}, added, reason)
        return next(p for p in self.paused() if p.kind == kind and p.shard == shard)

    def resume(self, *, kind: str | None = None, shard: str | None = None) -> bool:
        """Let workers claim it again; False if it was not paused (nothing is written then)."""
        kind, shard = _target(kind, shard)
        removed = 0
        for name in self._databases_for(shard):
            removed += self.queue.store_of(name).pause_remove(kind=kind, shard=shard)
        if removed:
            self._acted("resume", {"kind": kind, "shard": shard}, removed)
        return removed > 0

    def paused(self) -> list[Pause]:
        """Every pause, in every database (a kind paused everywhere shows once), by kind then shard."""
        found: dict[tuple[str | None, str | None], Pause] = {}
        for row in (r for name in self.queue.databases for r in self.queue.store_of(name).pause_list()):
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
    def schedules(self) -> AuditedSchedules:
        """Schedule operations: list, get, add, update, delete, pause, resume, run_now, skip_next, ...
        (those that change a schedule are written to the audit log)."""
        return AuditedSchedules(self.queue, self._acted)

    @property
    def groups(self) -> GroupOps:
        """Group operations: list, get, seal, cancel (seal and cancel are written to the audit log)."""
        return GroupOps(self.queue, self._acted)

    @property
    def pipelines(self) -> PipelineOps:
        """Pipeline runs: list, get (per-step progress), cancel, delete (cancel and delete are audited)."""
        return PipelineOps(self.queue, self._acted)

    def shards(self) -> list[Shard]:
        """Every shard with jobs or a partition, in every database, with counts by state; by name."""
        now = self._now
        found: list[Shard] = []
        for name in self.queue.databases:
            store = self.queue.store_of(name)
            parts = store.shard_partitions()
            counts: dict[str, dict[str, int]] = {}
            for state, _kind, shard, n in store.job_counts(now=now, cap=STATS_CAP)[0]:
                _tally(counts, shard, state, n)
            for shard in sorted(set(parts) | set(counts)):
                found.append(Shard(shard, name, parts.get(shard, DEFAULT_PARTITION), shard in parts,
                                   {k: v for k, v in counts.get(shard, {}).items() if v},
                                   self.queue.shard_map.database_for(shard) == name))
        return sorted(found, key=lambda s: (s.name, s.database))

    def audit(self, *, before: int | None = None, limit: int = 50) -> list[AuditEntry]:
        """The newest entries of the audit log (in the default database), older than entry ``before``."""
        check_int("limit", limit, 1, PAGE_LIMIT)
        if before is not None:
            check_int("before", before, 1, 2**63 - 1)
        return [AuditEntry.from_row(r) for r in self.queue.store.audit_list(before=before, limit=limit)]

    def _acted(self, action: str, target: dict[str, Any], count: int | None, detail: str | None = None) -> None:
        """After an action: drop the cached counts, write the audit entry (who, what, which, how many)."""
        with self._cache_lock:
            self._cache.clear()
        self.queue.store.audit_add(actor=self.actor, action=action, target=target, count=count, detail=detail,
                                   now=self._now)

    def _cursor_key(self) -> bytes:
        """The key of this queue's cursors: the default database's identity (made at migration, never shown)."""
        if "cursor" not in self._keys:
            self._keys["cursor"] = cursor_key(self.queue.store.database_id())
        return self._keys["cursor"]


def _tally(groups: dict[str, dict[str, int]], name: str, state: str, n: int) -> None:
    group = groups.setdefault(name, {})
    group[state] = group.get(state, 0) + n


def _filter(filt: JobFilter | None, *, required: bool = False) -> JobFilter:
    if filt is None and not required:
        return JobFilter()
    if not isinstance(filt, JobFilter):
        raise InvalidJobOptions(f"filter must be a finejobs.JobFilter, got {type(filt).__name__}")
    return filt


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
