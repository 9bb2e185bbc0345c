"""Which jobs an operator means: the filter every surface (CLI, web, REST, Django admin) passes to the
operations API, validated once here. Pure code: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from finejobs.errors import InvalidJobOptions
from finejobs.jobs import JobState
from finejobs.limits import check_text, check_time
from finejobs.sharding import validate_shard_name

MAX_FILTER_TEXT = 200  # characters of a kind, schedule name or error text in a filter


@dataclass(frozen=True)
class JobFilter:
    """Jobs matching every field that is set (all jobs when none is).

    ``error`` matches text in the message of the job's last recorded error (case-insensitive);
    ``created_*`` and ``finished_*`` are half-open ranges: after <= t < before.
    ``database`` (with a shard map) limits the listing to one database.
    """

    state: JobState | None = None
    kind: str | None = None
    shard: str | None = None
    schedule: str | None = None
    error: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None
    database: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and not isinstance(self.state, JobState):
            try:
                object.__setattr__(self, "state", JobState(self.state))
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise InvalidJobOptions(f"state: unknown state {str(self.state)[:40]!r} (one of {known})") from None
        for name in ("kind", "schedule", "error", "database"):
            value = getattr(self, name)
            if value is not None:
                check_text(name, value, max_chars=MAX_FILTER_TEXT)
        if self.shard is not None:
            validate_shard_name(self.shard)
        for name in ("created_after", "created_before", "finished_after", "finished_before"):
            check_time(name, getattr(self, name))
        for low, high in (("created_after", "created_before"), ("finished_after", "finished_before")):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a >= b:
                raise InvalidJobOptions(f"{low} ({a.isoformat()}) must be before {high} ({b.isoformat()})")

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def but(self, **changes: Any) -> JobFilter:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobFilter:
        """The filter from its JSON form (REST query parameters, an audit row): unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidJobOptions(f"unknown filter field(s): {', '.join(unknown)[:200]}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value in (None, ""):
                continue
            if key.endswith(("_after", "_before")) and isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value)
                except ValueError:
                    raise InvalidJobOptions(f"{key}: not an ISO 8601 time: {value[:40]!r}") from None
            values[key] = value
        return cls(**values)
