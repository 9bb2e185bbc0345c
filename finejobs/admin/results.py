"""The operations API's results: frozen dataclasses with ``to_json()`` (what every surface renders)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

from finejobs.filters import JobFilter
from finejobs.jobs import Job
from finejobs.store import AuditRow, PauseRow, WorkerRow

WORKER_GONE_AFTER = timedelta(seconds=30)  # a registry row not refreshed for this long: the worker is gone


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value.to_json() if hasattr(value, "to_json") else value


class _Result:
    """A result's ``to_json()``: its fields (and the properties named in ``_extra``), JSON-ready."""

    _extra: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        names = [*(f.name for f in fields(cast(Any, self))), *self._extra]
        return {name: _json(getattr(self, name)) for name in names}


@dataclass(frozen=True)
class JobPage(_Result):
    """One page of ``jobs()``: newest first; pass ``next_cursor`` for the next (None: no more)."""

    jobs: tuple[Job, ...]
    next_cursor: str | None
    examined: int = 0


@dataclass(frozen=True)
class Count(_Result):
    """How many jobs match a filter; ``at_least``: the count stopped at its cap."""

    count: int
    at_least: bool = False


@dataclass(frozen=True)
class BulkResult(_Result):
    """What a bulk action did, or with ``dry_run`` would touch (``matched`` only, ``changed`` 0).

    ``matched``: jobs the filter selects in the states the action applies to; ``changed``: those changed.
    The difference: jobs a worker held locked at that moment, and for a retry, jobs whose unique_key an
    unfinished job now holds (retrying them would make two). ``at_least``: a dry run's count hit its cap."""

    action: str
    filter: JobFilter
    matched: int
    changed: int
    dry_run: bool
    at_least: bool = False


@dataclass(frozen=True)
class Pause(_Result):
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


@dataclass(frozen=True)
class LocalScheduleInfo(_Result):
    """A local schedule (queue.local_schedule) as one worker process's registry row reports it, as of the row's
    last refresh. Read leniently: a field the row lacks or holds in another type is None (or 0)."""

    name: str
    rule: str | None
    running: bool
    last_run_at: datetime | None
    last_finished_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    next_run_at: datetime | None
    runs: int
    skipped: int

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> LocalScheduleInfo:
        def text(key: str) -> str | None:
            value = entry.get(key)
            return value if isinstance(value, str) else None

        def moment(key: str) -> datetime | None:
            try:
                value = text(key)
                return datetime.fromisoformat(value) if value else None
            except ValueError:
                return None

        def count(key: str) -> int:
            value = entry.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(name=text("name") or "?", rule=text("rule"), running=entry.get("running") is True,
                   last_run_at=moment("last_run_at"), last_finished_at=moment("last_finished_at"),
                   last_outcome=text("last_outcome"), last_error=text("last_error"),
                   next_run_at=moment("next_run_at"), runs=count("runs"), skipped=count("skipped"))


@dataclass(frozen=True)
class WorkerInfo(_Result):
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

    @property
    def local_schedules(self) -> tuple[LocalScheduleInfo, ...]:
        """The local schedules this worker process runs (finejobs.runtime.local_schedules), from its row."""
        entries = self.info.get("local_schedules") if isinstance(self.info, dict) else None
        if not isinstance(entries, list):
            return ()
        return tuple(LocalScheduleInfo.from_entry(e) for e in entries if isinstance(e, dict))

    @classmethod
    def from_row(cls, row: WorkerRow, *, now: datetime) -> WorkerInfo:
        return cls(**{**asdict(row), "shards": None if row.shards is None else tuple(row.shards),
                      "kinds": tuple(row.kinds), "alive": now - row.seen_at < WORKER_GONE_AFTER})


@dataclass(frozen=True)
class Overview(_Result):
    """Counts by state, kind and shard; per shard the lag (age of the oldest due waiting job; a shard with
    none is left out) and the waiting jobs expiring within EXPIRING_WITHIN; the pauses. Each stored state
    is counted up to STATS_CAP jobs, the newest (``capped`` says if one stopped there)."""

    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    by_shard: dict[str, dict[str, int]]
    lag_seconds: dict[str, float]
    expiring_soon: dict[str, int]
    paused: tuple[Pause, ...]
    capped: bool
    at: datetime
    _extra = ("total",)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass(frozen=True)
class Shard(_Result):
    """A shard of one database: where its rows live and its jobs by state (each stored state counted up to
    STATS_CAP). ``placed``: the shard map places the shard in this database (False: stray jobs, not yet
    moved)."""

    name: str
    database: str
    partition: str  # the table holding its rows: its own partition, or the default one
    own_partition: bool
    counts: dict[str, int]
    placed: bool = True
    _extra = ("unfinished",)

    @property
    def unfinished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("scheduled", "available", "running"))


@dataclass(frozen=True)
class AuditEntry(_Result):
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




@dataclass(frozen=True)
class Activity(_Result):
    """The last ``len(succeeded)`` minutes, oldest first, from ``since``: per minute the jobs that succeeded
    and failed then, and the lag: the longest wait (start - due) among them (None: none finished). Each
    state counts its newest ACTIVITY_CAP jobs of the window at most (``capped``)."""

    since: datetime
    succeeded: tuple[int, ...]
    failed: tuple[int, ...]
    lag_seconds: tuple[float | None, ...]
    capped: bool
    at: datetime


@dataclass(frozen=True)
class KindInfo(_Result):
    """A job kind the queue knows: its options and its payload's JSON schema (for forms and the REST API)."""

    name: str
    shard: str | None
    routing: str | None
    priority: int
    max_attempts: int
    expires_in_seconds: float | None
    timeout_seconds: float | None
    payload_schema: dict[str, Any]
