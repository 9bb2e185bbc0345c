"""Which jobs an operator means: the filter every surface (CLI, web, REST, Django admin) passes to the
operations API, validated once here; and the cursors of a listing of them. Pure code: no I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from finejobs.errors import InvalidJobOptions
from finejobs.jobs import JobState
from finejobs.limits import check_text, check_time
from finejobs.sharding import validate_shard_name

MAX_FILTER_TEXT = 200  # characters of a kind, schedule name or error text in a filter

_CURSOR = re.compile(r"([0-9]{1,4})\.([0-9]{0,19})\.([0-9a-f]{20})")


@dataclass(frozen=True)
class JobFilter:
    """Jobs matching every field that is set (all jobs when none is).

    ``state`` is a JobState or its name ("scheduled" and "available" are told apart by run_at);
    ``error`` matches text in the message of the job's last recorded error (case-insensitive, no wildcards);
    ``created_*`` and ``finished_*`` are half-open ranges: after <= t < before.
    ``database`` (with a shard map) limits the listing to one database.
    Every field is checked here: a bad one raises InvalidJobOptions naming it.
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
                if not isinstance(self.state, str):
                    raise ValueError
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
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise InvalidJobOptions(f"unknown filter field(s): {', '.join(unknown)[:200]}")
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
    def from_json(cls, data: Mapping[str, Any]) -> JobFilter:
        """The filter from its JSON form (REST query parameters, an audit row): unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise InvalidJobOptions(f"a filter must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(key)[:40] for key in set(data) - names)
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


# ---------------------------------------------------------------- cursors
# A cursor says where a listing of one filter goes on: "<database position>.<id below which>.<signature>"
# (the id empty at a database's start). The signature (HMAC-SHA256, keyed per queue) covers the position and
# the filter, so a cursor cannot be made up or altered, nor used with another filter or another queue.


def cursor_key(secret: str) -> bytes:
    """The key of a queue's cursors, from a secret of its (the default database's identity)."""
    return hashlib.sha256(b"finejobs cursor\0" + secret.encode("utf-8")).digest()


def _signature(key: bytes, filt: JobFilter, body: str) -> str:
    message = body + "\0" + json.dumps(filt.to_json(), sort_keys=True)
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def make_cursor(key: bytes, filt: JobFilter, position: int, before: int | None) -> str:
    body = f"{position}.{'' if before is None else before}"
    return f"{body}.{_signature(key, filt, body)}"


def read_cursor(key: bytes, filt: JobFilter, cursor: Any, databases: int) -> tuple[int, int | None]:
    """The (database position, id) a cursor of a listing of ``filt`` stands for; anything else is refused."""
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise InvalidJobOptions("cursor: not a cursor from a previous page")
    position, before, signature = match.groups()
    if not hmac.compare_digest(signature, _signature(key, filt, f"{position}.{before}")):
        raise InvalidJobOptions("cursor: not a cursor from a previous page of this filter")
    where, below = int(position), (int(before) if before else None)
    if where > databases or (below is not None and not 1 <= below < 2**63):
        raise InvalidJobOptions("cursor: not a cursor from a previous page of this filter")
    return where, below
