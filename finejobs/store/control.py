"""The SQL of the control table (pauses), the worker registry and the audit log (migration 0006)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from finejobs.store._base import StoreBase
from finejobs.store.tables import NOTIFY_CHANNEL


@dataclass(frozen=True)
class PauseRow:
    kind: str | None
    shard: str | None
    paused_at: datetime
    paused_by: str | None
    reason: str | None


@dataclass(frozen=True)
class WorkerRow:
    id: str
    host: str
    pid: int
    version: str
    database: str | None
    shards: list[str] | None
    kinds: list[str]
    concurrency: int
    started_at: datetime
    seen_at: datetime
    in_flight: int
    counters: dict[str, int]
    info: dict[str, Any]


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: dict[str, Any]
    count: int | None
    detail: str | None


_PAUSE = sa.text(
    "WITH added AS (INSERT INTO finejobs_pauses (kind, shard, paused_at, paused_by, reason) "
    "VALUES (:kind, :shard, :now, :by, :reason) ON CONFLICT DO NOTHING RETURNING 1) "
    "SELECT count(*) AS n, pg_notify(:channel, 'pause') FROM added")
_RESUME = sa.text(
    "WITH gone AS (DELETE FROM finejobs_pauses WHERE coalesce(kind, '') = coalesce(:kind, '') "
    "AND coalesce(shard, '') = coalesce(:shard, '') RETURNING 1) "
    "SELECT count(*) AS n, pg_notify(:channel, 'pause') FROM gone")
_PAUSES = sa.text(
    "SELECT kind, shard, paused_at, paused_by, reason FROM finejobs_pauses "
    "ORDER BY kind NULLS FIRST, shard NULLS FIRST LIMIT 10000")
_WORKER_UPSERT = sa.text(
    "INSERT INTO finejobs_workers (id, host, pid, version, database, shards, kinds, concurrency, started_at, "
    "seen_at, in_flight, counters, info) VALUES (:id, :host, :pid, :version, :database, :shards, :kinds, "
    ":concurrency, :started_at, :seen_at, :in_flight, CAST(:counters AS jsonb), CAST(:info AS jsonb)) "
    "ON CONFLICT (id) DO UPDATE SET seen_at = EXCLUDED.seen_at, in_flight = EXCLUDED.in_flight, "
    "counters = EXCLUDED.counters, info = EXCLUDED.info, shards = EXCLUDED.shards")
_AUDIT = sa.text(
    "INSERT INTO finejobs_audit (at, actor, action, target, count, detail) "
    "VALUES (:at, :actor, :action, CAST(:target AS jsonb), :count, :detail)")


class ControlStore(StoreBase):
    """Pauses, the worker registry, the audit log."""

    # ---------------------------------------------------------------- pauses

    def pause_add(self, *, kind: str | None, shard: str | None, now: datetime, by: str | None = None,
                  reason: str | None = None) -> bool:
        """Pause a kind, a shard or a kind in a shard; False if it was paused already. Workers are told."""
        params = {"kind": kind, "shard": shard, "now": now, "by": by, "reason": reason, "channel": NOTIFY_CHANNEL}
        with self.transaction(autocommit=True) as conn:
            return bool(conn.execute(_PAUSE, params).scalar())

    def pause_remove(self, *, kind: str | None, shard: str | None) -> bool:
        """Resume; False if it was not paused."""
        with self.transaction(autocommit=True) as conn:
            return bool(conn.execute(_RESUME, {"kind": kind, "shard": shard, "channel": NOTIFY_CHANNEL}).scalar())

    def pause_list(self) -> list[PauseRow]:
        rows = self._fast(_PAUSES, {})
        return [PauseRow(r["kind"], r["shard"], r["paused_at"], r["paused_by"], r["reason"]) for r in rows]

    # ---------------------------------------------------------------- the worker registry

    def worker_upsert(self, *, values: Mapping[str, Any]) -> None:
        params = {**values, "counters": json.dumps(values.get("counters", {})),
                  "info": json.dumps(values.get("info", {}))}
        self._fast(_WORKER_UPSERT, params)

    def worker_delete(self, *, worker_id: str) -> None:
        self._fast(sa.text("DELETE FROM finejobs_workers WHERE id = :id"), {"id": worker_id})

    def worker_list(self) -> list[WorkerRow]:
        rows = self._fast(sa.text("SELECT * FROM finejobs_workers ORDER BY started_at, id LIMIT 1000"), {})
        return [WorkerRow(**{k: r[k] for k in WorkerRow.__dataclass_fields__}) for r in rows]

    def worker_prune(self, *, before: datetime) -> int:
        """Forget workers not seen since ``before``."""
        rows = self._fast(sa.text("DELETE FROM finejobs_workers WHERE seen_at < :before RETURNING id"),
                          {"before": before})
        return len(rows)

    # ---------------------------------------------------------------- the audit log

    def audit_add(self, *, actor: str, action: str, target: Mapping[str, Any], count: int | None, detail: str | None,
                  now: datetime) -> None:
        params = {"at": now, "actor": actor, "action": action, "target": json.dumps(dict(target)),
                  "count": count, "detail": detail}
        with self.transaction(autocommit=True) as conn:
            conn.execute(_AUDIT, params)

    def audit_list(self, *, before: int | None = None, limit: int = 50) -> list[AuditRow]:
        stmt = sa.text("SELECT * FROM finejobs_audit WHERE (CAST(:before AS bigint) IS NULL OR id < :before) "
                       "ORDER BY id DESC LIMIT :limit")
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(stmt, {"before": before, "limit": limit}).mappings()
            return [AuditRow(**{k: r[k] for k in AuditRow.__dataclass_fields__}) for r in rows]

    def audit_prune(self, *, before: datetime, limit: int = 10_000) -> int:
        stmt = sa.text("DELETE FROM finejobs_audit WHERE id IN (SELECT id FROM finejobs_audit WHERE at < :before "
                       "ORDER BY id LIMIT :limit)")
        with self.transaction(autocommit=True) as conn:
            return int(conn.execute(stmt, {"before": before, "limit": limit}).rowcount)

