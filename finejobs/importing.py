"""Bulk import: many new jobs streamed into the job table with COPY, validated as they are read.

```python
from finejobs.importing import import_jobs

with open("claims.csv", newline="") as f:
    result = import_jobs(queue, "claims.review", csv.DictReader(f), group=queue.group("claims-2026-12"),
                         on_progress=lambda n: bar.update(n - bar.n))
print(result.count, result.seconds)
```

Every item is validated exactly as ``enqueue_many`` validates it (``Queue._new_job``: the kind's payload
model, the payload limits, times, priority, the kind's shard rule), one at a time, and written to an open
``COPY`` right after (finejobs.store.bulk): the iterable is consumed once and never held in memory, and
the database inserts while Python validates the next items. The whole import is one transaction: an
invalid item anywhere, or any error, writes nothing. With ``group=``, the group counts its new members in
that same transaction; one NOTIFY per shard that got due jobs wakes the workers at commit.

What COPY cannot do: return the new jobs' ids (the result is a count), or skip a duplicate ``unique_key``
(an item with one is refused: use ``enqueue_many``). Use ``enqueue_many`` for batches that need either;
use ``import_jobs`` for large batches (from about 10,000 jobs: see docs/enqueueing.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from finejobs.errors import InvalidJobOptions
from finejobs.jobs import NewJob
from finejobs.kinds import JobKind, JobSpec, _merge
from finejobs.limits import check_int
from finejobs.store import UserConnection, connection_database_id, mask_url
from finejobs.store.bulk import JobCopier

if TYPE_CHECKING:
    from finejobs.queue import Queue

DEFAULT_BATCH = 10_000


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote: how many jobs (per database too), in how many seconds, into which group."""

    count: int
    seconds: float
    group: str | None = None
    by_database: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "seconds": self.seconds, "per_second": self.per_second, "group": self.group,
                "by_database": dict(self.by_database)}


def import_jobs(
    queue: Queue,
    kind: str | JobKind[Any, Any],
    items: Iterable[Any],
    *,
    group: Any = None,
    shard: str | None = None,
    run_at: datetime | None = None,
    expires_at: datetime | None = None,
    priority: int | None = None,
    conn: UserConnection | None = None,
    on_progress: Callable[[int], None] | None = None,
    batch: int = DEFAULT_BATCH,
) -> ImportResult:
    """Validate every item and COPY it into the job table, in one transaction per database; returns the count.

    An item is a payload, or a ``JobSpec`` with options of its own (not ``unique_key``: COPY cannot skip a
    duplicate); ``shard``, ``run_at``, ``expires_at`` and ``priority`` are the defaults of every item, as
    for ``enqueue_many``. ``group`` (``queue.group(name)``, open) makes every job a member of it; its members
    live in its database. ``on_progress(n)`` is called with the number of jobs sent so far every
    ``batch`` jobs, its last call with the total (a tqdm bar: ``on_progress=lambda n: bar.update(n - bar.n)``);
    the jobs are committed when the import returns (one transaction).

    ``conn``: inside the caller's transaction (a savepoint in it: an error rolls the import back and leaves
    the caller's transaction usable; the caller's commit writes it). Every job must then live in the
    database ``conn`` is on.

    Atomicity: one database (no shard map, or every item's shard in one database): all or nothing. With a
    shard map whose databases hold the items' shards: one COPY per database, each in its own transaction,
    all open until the last item is read, then committed one after another. An invalid item, or any error
    before the commits, writes nothing anywhere; a failure during the commits (a database lost between two
    of them) leaves the databases committed before it written, as ``enqueue_many`` does (no two-phase
    commit: PostgreSQL's is off by default, ``max_prepared_transactions = 0``).
    """
    job_kind = kind if isinstance(kind, JobKind) else queue.kind(kind)
    if job_kind.queue is not queue:
        raise InvalidJobOptions(f"job kind {job_kind.name!r} belongs to another queue")
    check_int("batch", batch, 1, 10_000_000)
    if on_progress is not None and not callable(on_progress):
        raise InvalidJobOptions("on_progress must be a callable taking the number of jobs sent so far")
    group_id = _open_group(queue, group)
    defaults = JobSpec(None, shard=shard, run_at=run_at, expires_at=expires_at, priority=priority)
    now = queue.clock()
    started = time.perf_counter()
    rows = _validated(queue, job_kind, items, defaults, now, group)
    with _Copies(queue, now=now, group_id=group_id, conn=conn) as copies:
        count = copies.write_all(rows, on_progress=on_progress, batch=batch)
        by_database = copies.counts()
    if on_progress is not None and (count == 0 or count % batch):
        on_progress(count)  # the last call says the total (unless the last batch's call already did)
    return ImportResult(count=count, seconds=time.perf_counter() - started,
                        group=None if group is None else str(group.name), by_database=by_database)


def _open_group(queue: Queue, group: Any) -> int | None:
    """The group's id, after checking (once, before a million rows are streamed) that it can take members."""
    if group is None:
        return None
    group_id = getattr(group, "id", None)
    if not isinstance(group_id, int) or isinstance(group_id, bool):
        raise InvalidJobOptions(f"group must be a group of this queue (queue.group(name)), not {type(group).__name__}")
    if getattr(group, "queue", queue) is not queue:
        raise InvalidJobOptions(f"group {getattr(group, 'name', group_id)!r} belongs to another queue")
    database = getattr(group, "database", queue.shard_map.default)
    row = queue.store_of(database).group_get(group_id=group_id)  # GroupNotFound if it is gone
    if row.sealed:
        raise InvalidJobOptions(f"group {row.name!r} is sealed: no job can join it")
    return group_id


def _validated(queue: Queue, kind: JobKind[Any, Any], items: Iterable[Any], defaults: JobSpec, now: datetime,
               group: Any) -> Iterator[NewJob]:
    """Each item as the NewJob enqueue would make of it, one at a time (nothing is held)."""
    new_job = queue._new_job
    for item in items:
        spec = _merge(item, defaults)
        if spec.unique_key is not None:
            raise InvalidJobOptions(
                "import_jobs cannot honour unique_key (COPY can neither skip a duplicate nor return the job that "
                "holds the key): enqueue jobs with unique keys with enqueue_many")
        yield new_job(kind, spec, now, None, group)


class _Copies:
    """One COPY per database the jobs' shards live in, opened on the first job for it, all closed together
    (committed in order when every job was written; all rolled back on an error before that)."""

    def __init__(self, queue: Queue, *, now: datetime, group_id: int | None, conn: UserConnection | None) -> None:
        self.queue = queue
        self.now = now
        self.group_id = group_id
        self.conn = conn
        self.single = queue.shard_map.default if len(queue.shard_map.names) == 1 else None
        self.copiers: dict[str, JobCopier] = {}
        self.stack = ExitStack()

    def __enter__(self) -> _Copies:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stack.__exit__(*exc)

    def counts(self) -> dict[str, int]:
        return {database: copier.count for database, copier in self.copiers.items()}

    def write_all(self, rows: Iterable[NewJob], *, on_progress: Callable[[int], None] | None, batch: int) -> int:
        count = 0
        shard_map = self.queue.shard_map
        last: tuple[str, JobCopier] | None = None
        for row in rows:
            database = self.single or shard_map.database_for(row.shard)
            if last is None or last[0] != database:
                last = (database, self.copier(database, row))
            last[1].write(row)
            count += 1
            if on_progress is not None and count % batch == 0:
                on_progress(count)
        return count

    def copier(self, database: str, row: NewJob) -> JobCopier:
        found = self.copiers.get(database)
        if found is not None:
            return found
        if self.conn is not None:
            if self.copiers:
                raise InvalidJobOptions(
                    f"conn= is one transaction on one database, but shard {row.shard!r} lives in database "
                    f"{database!r} and earlier jobs in {next(iter(self.copiers))!r}: import them per database, "
                    "or without conn=")
            if connection_database_id(self.conn) != self.queue._database_id(database):
                raise InvalidJobOptions(
                    f"shard {row.shard!r} lives in database {database!r} "
                    f"({mask_url(self.queue.shard_map.url(database))}), but conn is a connection to another "
                    "database: import in a transaction on that database, or without conn=")
        store = self.queue.store_of(database)
        copier = self.stack.enter_context(store.job_copy(now=self.now, group_id=self.group_id, conn=self.conn))
        self.copiers[database] = copier
        return copier
