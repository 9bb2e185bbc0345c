"""Group rows (finejobs_groups): counters kept in the transactions that change their members, completion
detected under the group row's lock, callbacks inserted in the transaction that finishes the group.

Every statement that moves a member job between states returns (group_id, old state, new state) for the
rows it changed, and ``apply_group_changes`` turns those into counter deltas in the same transaction. The
group row is locked (in id order, so two batches never deadlock) by that update; whichever transaction
brings the finished count of a sealed group up to its total marks it finished (``finished_at IS NULL``
guards it: once) and inserts its callbacks with the unique key ``finejobs:group:<id>:<event>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from finejobs.errors import FinejobsError, GroupNotFound
from finejobs.jobs import Job, NewJob
from finejobs.store import citus
from finejobs.store._base import StoreBase, UserConnection, _run
from finejobs.store.tables import NOTIFY_CHANNEL

FINAL_STORED = ("succeeded", "failed", "expired", "cancelled")

EVENTS = ("complete", "success", "failure")


@dataclass(frozen=True)
class GroupRow:
    """One group row as stored."""

    id: int
    name: str
    total: int
    succeeded: int
    failed: int
    expired: int
    cancelled: int
    sealed: bool
    callbacks: dict[str, Any]
    outcome: str | None
    created_at: datetime
    sealed_at: datetime | None
    cancelled_at: datetime | None
    first_done_at: datetime | None
    last_done_at: datetime | None
    finished_at: datetime | None
    state: str  # derived in SQL from the columns above (_STATE)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> GroupRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.expired + self.cancelled


Change = tuple[int | None, str | None, str | None]  # (group id, stored state before, after); None: no row


def group_deltas(changes: Iterable[Change]) -> dict[int, dict[str, int]]:
    """Counter deltas per group from member state changes (an old state of None: a new member; a new state
    of None: a deleted one). Counters count outcomes: a final state's count goes up when a member enters
    it and down when a retry takes it out; a deleted unfinished member leaves the total."""
    deltas: dict[int, dict[str, int]] = {}
    for group_id, old, new in changes:
        if group_id is None or old == new:
            continue
        d = deltas.setdefault(group_id, {"total": 0, "finished": 0, **{s: 0 for s in FINAL_STORED}})
        if old is None:
            d["total"] += 1
        elif old in FINAL_STORED:
            d[old] -= 1
        if new is None:
            if old is not None and old not in FINAL_STORED:
                d["total"] -= 1
        elif new in FINAL_STORED:
            d[new] += 1
            d["finished"] += 1
    return {g: d for g, d in deltas.items() if any(d.values())}


# A group's state (open, sealed, cancelling, succeeded, failed, cancelled) is derived here, once, for every read
# and for the list's filter.
_STATE = """CASE WHEN finished_at IS NOT NULL THEN CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' ELSE outcome END
                 WHEN cancelled_at IS NOT NULL THEN 'cancelling' WHEN sealed THEN 'sealed' ELSE 'open' END"""

_GROUP_COLUMNS = ("id, name, total, succeeded, failed, expired, cancelled, sealed, callbacks, outcome, created_at, "
                  f"sealed_at, cancelled_at, first_done_at, last_done_at, finished_at, {_STATE} AS state")

_APPLY = sa.text("""
    WITH d AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS x(id bigint, total bigint, succeeded bigint, failed bigint, expired bigint, cancelled bigint,
                 finished bigint)
    ), locked AS MATERIALIZED (
        SELECT g.id FROM finejobs_groups g WHERE g.id IN (SELECT id FROM d) ORDER BY g.id FOR UPDATE
    )
    UPDATE finejobs_groups g
    SET total = g.total + d.total, succeeded = g.succeeded + d.succeeded, failed = g.failed + d.failed,
        expired = g.expired + d.expired, cancelled = g.cancelled + d.cancelled,
        first_done_at = CASE WHEN d.finished > 0 THEN COALESCE(g.first_done_at, :now) ELSE g.first_done_at END,
        last_done_at = CASE WHEN d.finished > 0 THEN CAST(:now AS timestamptz) ELSE g.last_done_at END
    FROM d
    WHERE g.id = d.id AND g.id IN (SELECT id FROM locked)
    RETURNING g.id, g.sealed AND g.finished_at IS NULL
                    AND g.succeeded + g.failed + g.expired + g.cancelled >= g.total AS complete
""")

_FINISH = sa.text(f"""
    UPDATE finejobs_groups
    SET finished_at = :now,
        outcome = CASE WHEN failed + expired + cancelled = 0 THEN 'succeeded' ELSE 'failed' END
    WHERE id = ANY(CAST(:ids AS bigint[])) AND finished_at IS NULL AND sealed
      AND succeeded + failed + expired + cancelled >= total
    RETURNING {_GROUP_COLUMNS}
""")

_CREATE = sa.text(f"""
    INSERT INTO finejobs_groups (name, callbacks, created_at) VALUES (:name, CAST(:callbacks AS jsonb), :now)
    ON CONFLICT (name) DO NOTHING
    RETURNING {_GROUP_COLUMNS}
""")

_JOIN = sa.text("UPDATE finejobs_groups SET total = total + :n WHERE id = :id AND NOT sealed RETURNING id")

_SEAL = sa.text(
    "UPDATE finejobs_groups SET sealed = true, sealed_at = COALESCE(sealed_at, :now) WHERE id = :id RETURNING id")

_CANCEL_FLAG = sa.text("""
    UPDATE finejobs_groups SET sealed = true, sealed_at = COALESCE(sealed_at, :now),
        cancelled_at = COALESCE(cancelled_at, :now)
    WHERE id = :id AND finished_at IS NULL RETURNING id
""")

def _cancel_waiting_sql(*, in_shard: bool) -> sa.TextClause:
    # in_shard (Citus): one router statement a shard, which Citus needs for FOR UPDATE.
    shard = "shard = :shard AND " if in_shard else ""
    entry = citus.error_entry(attempt="j.attempt", error="'Cancelled'", message="CAST(:reason AS text)", worker="NULL")
    return sa.text(f"""
    WITH picked AS (
        SELECT id, shard FROM finejobs_jobs WHERE {shard}group_id = :id AND state = 'available'
        LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    UPDATE finejobs_jobs AS j
    SET state = 'cancelled', finished_at = :now, errors = j.errors || {entry}
    FROM picked
    WHERE {"j." + shard if in_shard else ""}j.id = picked.id AND j.shard = picked.shard
    RETURNING j.group_id
""")


_CANCEL_WAITING = _cancel_waiting_sql(in_shard=False)
_CANCEL_WAITING_IN_SHARD = _cancel_waiting_sql(in_shard=True)
_WAITING_SHARDS = sa.text("SELECT shard FROM finejobs_jobs WHERE group_id = :id AND state = 'available' GROUP BY shard")

_GET = {
    "name": sa.text(f"SELECT {_GROUP_COLUMNS} FROM finejobs_groups WHERE name = :key"),
    "id": sa.text(f"SELECT {_GROUP_COLUMNS} FROM finejobs_groups WHERE id = :key"),
}

_LIST = sa.text(f"""
    SELECT {_GROUP_COLUMNS} FROM finejobs_groups
    WHERE (CAST(:before AS bigint) IS NULL OR id < :before)
      AND (CAST(:state AS text) IS NULL OR {_STATE} = :state)
    ORDER BY id DESC LIMIT :limit
""")

_MEMBERS = sa.text("""
    SELECT j.* FROM unnest(CAST(:states AS text[])) AS s(state)
    CROSS JOIN LATERAL (
        SELECT * FROM finejobs_jobs WHERE group_id = :id AND state = s.state ORDER BY id DESC LIMIT :limit
    ) AS j
    ORDER BY j.id DESC LIMIT :limit
""")

# Citus cannot push down a LIMIT in a lateral subquery over a function: the same rows, in one multi-shard read.
_MEMBERS_CITUS = sa.text(
    "SELECT * FROM finejobs_jobs WHERE group_id = :id AND state = ANY(CAST(:states AS text[])) "
    "ORDER BY id DESC LIMIT :limit")

_RUNNING = sa.text(
    "SELECT count(*) FROM (SELECT 1 FROM finejobs_jobs WHERE group_id = :id AND state = 'running' LIMIT :cap) AS r")


def _interval_seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def callback_jobs(group: GroupRow, now: datetime) -> list[NewJob]:
    """The callback jobs a group that just finished enqueues: on_complete, and on_success or on_failure."""
    assert group.outcome is not None
    events = ["complete", "success" if group.outcome == "succeeded" else "failure"]
    jobs: list[NewJob] = []
    for event in events:
        spec = group.callbacks.get(event)
        if not isinstance(spec, Mapping):
            continue
        expires_in = _interval_seconds(spec.get("expires_in"))
        jobs.append(NewJob(
            kind=str(spec["kind"]), payload=dict(spec["payload"]), payload_json=json.dumps(spec["payload"]),
            shard=str(spec["shard"]), priority=int(spec.get("priority", 0)), run_at=now,
            expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
            max_attempts=int(spec.get("max_attempts", 3)), unique_key=f"finejobs:group:{group.id}:{event}",
        ))
    return jobs


class GroupStore(StoreBase):
    """Groups of jobs: rows, counters, sealing, cancelling, and their callbacks."""

    # ------------------------------------------------------------ counters (in the caller's transaction)

    def apply_group_changes(self, conn: UserConnection, changes: Iterable[Change], *, now: datetime) -> list[int]:
        """Update the counters of the groups whose members ``changes`` moved, in ``conn``'s transaction, and
        finish (callbacks included) every sealed group that is now complete; returns the ids finished."""
        deltas = group_deltas(changes)
        if not deltas:
            return []
        rows = [{"id": g, **d} for g, d in sorted(deltas.items())]
        applied = _run(conn, _APPLY, {"rows": json.dumps(rows), "now": now})
        complete = [int(r["id"]) for r in applied if r["complete"]]
        return self._finish(conn, complete, now=now) if complete else []

    def _finish(self, conn: UserConnection, ids: Sequence[int], *, now: datetime) -> list[int]:
        """Mark complete groups finished and insert their callbacks, in ``conn``'s transaction."""
        finished = [GroupRow.from_row(r) for r in _run(conn, _FINISH, {"ids": list(ids), "now": now})]
        callbacks = [job for group in finished for job in callback_jobs(group, now)]
        if callbacks:
            self._insert_callbacks(conn, callbacks, now)
        return [g.id for g in finished]

    def _insert_callbacks(self, conn: UserConnection, jobs: list[NewJob], now: datetime) -> None:
        self._insert(conn, jobs, now)

    def _insert(self, conn: UserConnection, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        raise NotImplementedError  # JobRowsStore._insert (a subclass), on the same JobStore

    def group_join(self, conn: UserConnection, *, group_id: int, count: int) -> None:
        """Count ``count`` new members into an open group, in ``conn``'s transaction (the one that inserted
        them); raises (so that the caller's transaction rolls back) if the group is sealed or gone."""
        if count <= 0:
            return
        if not _run(conn, _JOIN, {"id": group_id, "n": count}):
            raise FinejobsError(f"group {group_id} is sealed (or was deleted): no job can join it")

    # ------------------------------------------------------------ rows

    def group_create(self, *, name: str, callbacks: Mapping[str, Any], now: datetime) -> tuple[GroupRow, bool]:
        """The group named ``name``, made now with these callbacks if there was none; the bool says it was
        made (an existing group keeps its callbacks)."""
        with self.transaction(autocommit=True) as conn:
            rows = _run(conn, _CREATE, {"name": name, "callbacks": json.dumps(dict(callbacks)), "now": now})
            if rows:
                return GroupRow.from_row(rows[0]), True
            found = _run(conn, _GET["name"], {"key": name})
        if not found:  # pragma: no cover - deleted between the two statements
            raise GroupNotFound(f"no group named {name!r}")
        return GroupRow.from_row(found[0]), False

    def group_get(self, *, name: str | None = None, group_id: int | None = None) -> GroupRow:
        key, value = ("name", name) if name is not None else ("id", group_id)
        with self.transaction(autocommit=True) as conn:
            rows = _run(conn, _GET[key], {"key": value})
        if not rows:
            raise GroupNotFound(f"no group {'named ' + repr(name) if name is not None else f'with id {group_id}'}")
        return GroupRow.from_row(rows[0])

    def group_list(self, *, before: int | None = None, limit: int = 50, state: str | None = None) -> list[GroupRow]:
        """Groups, newest first, with ids below ``before`` (in ``state``: open, sealed, cancelling, succeeded,
        failed, cancelled)."""
        with self.transaction(autocommit=True) as conn:
            return [GroupRow.from_row(r) for r in _run(conn, _LIST, {"before": before, "limit": limit,
                                                                      "state": state})]

    def group_running(self, *, group_id: int, cap: int = 100_000) -> int:
        """How many members are running now (at most ``cap`` counted)."""
        with self.transaction(autocommit=True) as conn:
            return int(_run(conn, _RUNNING, {"id": group_id, "cap": cap})[0]["count"])

    def group_members(self, *, group_id: int, states: Sequence[str], limit: int, now: datetime) -> list[Job]:
        """Members in these stored states, newest first: a backward scan of the group index (group_id, state,
        id) per state, so a group with a million failures costs what one with ten does."""
        with self.transaction(autocommit=True) as conn:
            rows = _run(conn, _MEMBERS_CITUS if self.citus else _MEMBERS,
                        {"id": group_id, "states": list(states), "limit": limit})
        return [Job.from_row(r, now=now) for r in rows]

    def group_seal(self, *, group_id: int, now: datetime) -> GroupRow:
        """Seal a group (no job joins it any more); if all its members are done, it finishes now."""
        with self.transaction() as conn:
            if not _run(conn, _SEAL, {"id": group_id, "now": now}):
                raise GroupNotFound(f"no group with id {group_id}")
            self._finish(conn, [group_id], now=now)
        return self.group_get(group_id=group_id)

    def group_cancel(self, *, group_id: int, now: datetime, reason: str, batch: int = 2_000) -> int:
        """Seal a group and cancel its waiting members, ``batch`` per short transaction (running members
        finish as they will); returns how many were cancelled."""
        with self.transaction() as conn:
            if not _run(conn, _CANCEL_FLAG, {"id": group_id, "now": now}):
                group = self.group_get(group_id=group_id)  # raises GroupNotFound
                raise FinejobsError(f"group {group.name!r} has finished ({group.outcome}): nothing to cancel")
            self._finish(conn, [group_id], now=now)
        cancelled = 0
        params = {"id": group_id, "now": now, "now_iso": now.isoformat(), "reason": reason, "limit": batch}
        while True:
            with self.transaction() as conn:
                if self.citus:
                    rows = [row for shard in [r["shard"] for r in _run(conn, _WAITING_SHARDS, params)]
                            for row in _run(conn, _CANCEL_WAITING_IN_SHARD, {**params, "shard": shard})]
                else:
                    rows = _run(conn, _CANCEL_WAITING, params)
                self.apply_group_changes(conn, [(group_id, "available", "cancelled")] * len(rows), now=now)
            cancelled += len(rows)
            if len(rows) < batch:
                return cancelled

    @staticmethod
    def notify_shards(conn: UserConnection, shards: Sequence[str]) -> None:
        if shards:
            _run(conn, sa.text("SELECT count(pg_notify(:channel, s)) FROM unnest(CAST(:shards AS text[])) AS s"),
                 {"channel": NOTIFY_CHANNEL, "shards": sorted(set(shards))})
