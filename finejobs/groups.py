"""Groups: named sets of jobs with progress and completion callbacks (``queue.group(name)``).

```python
with queue.group("renewals-2026-12-07", on_success=(send_report, {"run": "2026-12-07"})) as renewals:
    renewals.enqueue_many(renew_policy, policies)      # in one statement, counted into the group with it
renewals.wait(timeout=3600)                              # sealed on leaving the block; GroupProgress
```
A group lives in one database (the default one, or ``database=``), with its members and callbacks. Its
counters move in the transaction that changes a member's state, so completion is detected without a
coordinator, and each callback is an ordinary job enqueued exactly once (finejobs.store.groups).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from finejobs.errors import FinejobsError, GroupNotFound, InvalidJobOptions
from finejobs.jobs import Job
from finejobs.kinds import JobKind
from finejobs.limits import MAX_MESSAGE_CHARS, check_text
from finejobs.sharding import validate_shard_name
from finejobs.store import GroupRow, JobStore

if TYPE_CHECKING:
    from finejobs.importing import ImportResult
    from finejobs.queue import Queue

GROUP_STATES = ("open", "sealed", "cancelling", "succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Callback:
    """A job to enqueue when a group finishes: ``Callback(kind, payload)``. The payload defaults to
    ``{"group": <the group's name>}``; shard and priority to the kind's."""

    kind: str | JobKind[Any, Any]
    payload: Any = None
    shard: str | None = None
    priority: int | None = None


CallbackLike = Callback | JobKind[Any, Any] | str | tuple[Any, Any]


class GroupTimeout(FinejobsError, TimeoutError):
    """``Group.wait`` ran out of time before the group finished."""


@dataclass(frozen=True)
class GroupProgress:
    """Where a group stands: counts by state, the rate members finish at, an estimate of the time left."""

    id: int
    name: str
    database: str
    state: str
    total: int
    waiting: int
    running: int
    succeeded: int
    failed: int
    expired: int
    cancelled: int
    per_second: float | None
    eta_seconds: float | None
    created_at: datetime
    sealed_at: datetime | None
    cancelled_at: datetime | None
    finished_at: datetime | None
    callbacks: tuple[str, ...]

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.expired + self.cancelled

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else 100.0 * self.done / self.total

    @classmethod
    def of(cls, row: GroupRow, *, database: str, running: int) -> GroupProgress:
        per_second = eta = None
        if row.first_done_at is not None and row.last_done_at is not None:
            span = (row.last_done_at - row.first_done_at).total_seconds()
            if span > 0 and row.done > 1:
                per_second = (row.done - 1) / span
                if row.finished_at is None:
                    eta = max(0, row.total - row.done) / per_second
        running = min(running, max(0, row.total - row.done))
        return cls(
            id=row.id, name=row.name, database=database, state=row.state, total=row.total,
            waiting=max(0, row.total - row.done - running), running=running, succeeded=row.succeeded,
            failed=row.failed, expired=row.expired, cancelled=row.cancelled, per_second=per_second,
            eta_seconds=eta, created_at=row.created_at, sealed_at=row.sealed_at, cancelled_at=row.cancelled_at,
            finished_at=row.finished_at, callbacks=tuple(sorted(row.callbacks)),
        )

    def to_json(self) -> dict[str, Any]:
        def ts(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id, "name": self.name, "database": self.database, "state": self.state, "total": self.total,
            "waiting": self.waiting, "running": self.running, "succeeded": self.succeeded, "failed": self.failed,
            "expired": self.expired, "cancelled": self.cancelled, "done": self.done, "percent": self.percent,
            "per_second": self.per_second, "eta_seconds": self.eta_seconds, "created_at": ts(self.created_at),
            "sealed_at": ts(self.sealed_at), "cancelled_at": ts(self.cancelled_at),
            "finished_at": ts(self.finished_at), "callbacks": list(self.callbacks),
        }


class Group:
    """A handle on one group (made by ``queue.group(name)``). Jobs join it until it is sealed; a ``with``
    block seals it when the block ends without an exception."""

    def __init__(self, queue: Queue, row: GroupRow, database: str) -> None:
        self.queue = queue
        self.id = row.id
        self.name = row.name
        self.database = database

    def __repr__(self) -> str:
        return f"<Group {self.name!r} id={self.id} database={self.database!r}>"

    def __enter__(self) -> Group:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.seal()

    @property
    def _store(self) -> JobStore:
        return self.queue.store_of(self.database)

    def enqueue(self, kind: str | JobKind[Any, Any], payload: Any, **options: Any) -> Job:
        """Enqueue one member (``JobKind.enqueue``'s options, ``conn=`` included)."""
        return _kind(self.queue, kind).enqueue(payload, group=self, **options)

    def enqueue_many(self, kind: str | JobKind[Any, Any], items: Iterable[Any], **options: Any) -> list[Job]:
        """Enqueue many members in one statement (``JobKind.enqueue_many``'s options)."""
        return _kind(self.queue, kind).enqueue_many(items, group=self, **options)

    def import_(self, kind: str | JobKind[Any, Any], items: Iterable[Any], **options: Any) -> ImportResult:
        """Load many members with COPY in one transaction (``queue.import_``'s options)."""
        from finejobs.importing import import_jobs

        return import_jobs(self.queue, kind, items, group=self, **options)

    def seal(self) -> GroupProgress:
        """No job joins the group any more; once its members are all done it finishes (at once if they
        are already). Sealing a sealed group changes nothing."""
        self._store.group_seal(group_id=self.id, now=self.queue.clock())
        return self.progress()

    def cancel(self, reason: str = "group cancelled") -> int:
        """Seal the group and cancel its waiting members (running ones finish as they will); returns how
        many were cancelled. The group then finishes as failed, and its on_failure callback runs."""
        check_text("reason", reason, max_chars=MAX_MESSAGE_CHARS)
        return self._store.group_cancel(group_id=self.id, now=self.queue.clock(), reason=reason)

    def progress(self) -> GroupProgress:
        row = self._store.group_get(group_id=self.id)
        running = 0 if row.finished_at is not None else self._store.group_running(group_id=self.id)
        return GroupProgress.of(row, database=self.database, running=running)

    def wait(self, timeout: float | None = None, *, poll: float = 0.2) -> GroupProgress:
        """Block until the group has finished (sealed and every member done); raises GroupTimeout after
        ``timeout`` seconds. Polls the group row (one indexed read) every ``poll`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            progress = self.progress()
            if progress.finished:
                return progress
            if deadline is not None and time.monotonic() >= deadline:
                raise GroupTimeout(f"group {self.name!r} did not finish within {timeout}s: {progress.done} of "
                                   f"{progress.total} members done ({progress.state})")
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


def _kind(queue: Queue, kind: str | JobKind[Any, Any]) -> JobKind[Any, Any]:
    if isinstance(kind, JobKind):
        if kind.queue is not queue:
            raise InvalidJobOptions(f"job kind {kind.name!r} belongs to another queue")
        return kind
    return queue.kind(kind)


def callback_spec(queue: Queue, event: str, value: CallbackLike, *, group_name: str,
                  database: str) -> dict[str, Any]:
    """A callback as stored on the group row, validated now (an unknown kind, a bad payload or a shard in
    another database is refused before the group is made)."""
    if isinstance(value, Callback):
        callback = value
    elif isinstance(value, tuple):
        if len(value) != 2:
            raise InvalidJobOptions(f"on_{event}: give a Callback, a job kind, or a (kind, payload) pair")
        callback = Callback(value[0], value[1])
    elif isinstance(value, JobKind | str):
        callback = Callback(value)
    else:
        raise InvalidJobOptions(f"on_{event}: give a Callback, a job kind, or a (kind, payload) pair, "
                                f"not {type(value).__name__}")
    kind = _kind(queue, callback.kind)
    payload = kind.validate({"group": group_name} if callback.payload is None else callback.payload)
    shard = validate_shard_name(callback.shard if callback.shard is not None else kind.shard_for(payload))
    if queue.shard_map.database_for(shard) != database:
        raise InvalidJobOptions(f"on_{event}: shard {shard!r} lives in database "
                                f"{queue.shard_map.database_for(shard)!r}, but the group lives in {database!r}")
    priority = kind.priority if callback.priority is None else callback.priority
    spec: dict[str, Any] = {"kind": kind.name, "shard": shard, "payload": payload, "priority": priority,
                            "max_attempts": kind.retry.max_attempts}
    if kind.expires_in is not None:
        spec["expires_in"] = kind.expires_in.total_seconds()
    return spec


def make_group(queue: Queue, name: str, *, on_complete: CallbackLike | None, on_success: CallbackLike | None,
               on_failure: CallbackLike | None, database: str | None) -> Group:
    """``Queue.group``: the group named ``name`` in ``database`` (default: the shard map's default), made
    now with these callbacks if it does not exist (an existing group keeps the callbacks it was made with)."""
    check_text("group name", name, max_chars=200)
    database = queue.shard_map.default if database is None else database
    if database not in queue.databases:
        raise InvalidJobOptions(f"no database {database!r} in the shard map (databases: {', '.join(queue.databases)})")
    callbacks = {event: callback_spec(queue, event, value, group_name=name, database=database)
                 for event, value in (("complete", on_complete), ("success", on_success), ("failure", on_failure))
                 if value is not None}
    row, _ = queue.store_of(database).group_create(name=name, callbacks=callbacks, now=queue.clock())
    return Group(queue, row, database)


def find_group(queue: Queue, name: str, *, database: str | None = None) -> Group:
    """The existing group named ``name`` (searched in every database unless one is named)."""
    check_text("group name", name, max_chars=200)
    found: list[Group] = []
    for db in [database] if database is not None else queue.databases:
        try:
            found.append(Group(queue, queue.store_of(db).group_get(name=name), db))
        except GroupNotFound:
            continue
    if len(found) > 1:
        raise FinejobsError(f"group {name!r} exists in databases {', '.join(g.database for g in found)}: name one")
    if not found:
        raise GroupNotFound(f"no group named {name!r}")
    return found[0]


def list_groups(queue: Queue, *, before: Mapping[str, int] | None = None, limit: int = 50,
                state: str | None = None) -> list[GroupProgress]:
    """Groups of every database, newest first (``before``: per database, ids below; ``state``: only those)."""
    found: list[GroupProgress] = []
    for db in queue.databases:
        store = queue.store_of(db)
        for row in store.group_list(before=(before or {}).get(db), limit=limit, state=state):
            running = 0 if row.finished_at is not None else store.group_running(group_id=row.id)
            found.append(GroupProgress.of(row, database=db, running=running))
    found.sort(key=lambda g: (g.created_at, g.id), reverse=True)
    return found[:limit]
