"""Schedule rows: the statements of the scheduler and of the schedule operations.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from finejobs.jobs import NewJob
from finejobs.store import citus_schedules
from finejobs.store._base import StoreBase, _run
from finejobs.store.tables import NOTIFY_CHANNEL, schedules_table

# The columns a schedule operation may set (update() takes names from this list only, never from users).
SCHEDULE_SETTABLE = (
    "description", "kind", "payload", "shard", "priority", "max_attempts", "rule", "timezone", "start_at",
    "end_at", "paused", "misfire", "misfire_limit", "misfire_grace", "overlap", "expires_in", "next_fire_at",
    "last_error", "source", "fired",
)


@dataclass(frozen=True)
class ScheduleRow:
    """A schedule row, with what its last run did (from the job it made, while that job is kept)."""

    id: int
    name: str
    description: str
    kind: str
    payload: dict[str, Any]
    shard: str
    priority: int
    max_attempts: int
    rule: dict[str, Any]
    timezone: str
    start_at: datetime | None
    end_at: datetime | None
    paused: bool
    misfire: str
    misfire_limit: int
    misfire_grace: timedelta
    overlap: str
    expires_in: timedelta | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_job_id: int | None
    runs: int
    skipped: int
    last_error: str | None
    source: str
    version: int
    created_at: datetime
    updated_at: datetime
    fired: int = 0  # ticks that made a run (what a rule's COUNT counts; run-now runs are not ticks)
    last_state: str | None = None
    last_result: str | None = None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    unfinished: bool = False

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ScheduleRow:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class ScheduleRunRow:
    """One job a schedule made."""

    job_id: int
    fire_at: datetime | None
    state: str
    result: str | None
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_attempts: int
    error: str | None


_SCHEDULE_SELECT = """
    SELECT s.*, j.state AS last_state, j.result AS last_result, j.started_at AS last_started_at,
           j.finished_at AS last_finished_at,
           EXISTS (SELECT 1 FROM finejobs_jobs u
                   WHERE u.schedule_id = s.id AND u.state IN ('available', 'running')
                     AND (u.state = 'running' OR u.expires_at IS NULL OR u.expires_at > :now)) AS unfinished
    FROM finejobs_schedules s LEFT JOIN finejobs_jobs j ON j.id = s.last_job_id
"""


_SCHEDULE_GET = sa.text(_SCHEDULE_SELECT + " WHERE s.name = :name")


_SCHEDULE_LIST = sa.text(
    _SCHEDULE_SELECT
    + """ WHERE CAST(:pattern AS text) IS NULL OR s.name ILIKE :pattern OR s.description ILIKE :pattern
              OR s.kind ILIKE :pattern
          ORDER BY s.name"""
)


_SCHEDULE_DUE = sa.text(
    _SCHEDULE_SELECT
    + """ WHERE s.id = ANY(ARRAY(SELECT id FROM finejobs_schedules
                                 WHERE NOT paused AND next_fire_at <= :now
                                 ORDER BY next_fire_at LIMIT :limit))
          ORDER BY s.next_fire_at"""
)


_SCHEDULE_TAKE_DUE = sa.text(
    # A batch of due schedules, locked: several schedulers each take different rows (SKIP LOCKED) instead of
    # racing for the same ones. An index range on finejobs_schedules_due_idx (next_fire_at) WHERE NOT paused.
    # ``passed``: rows this pass already looked at and left due (overlap="wait" behind an unfinished run).
    """
    SELECT s.* FROM finejobs_schedules s
    WHERE NOT s.paused AND s.next_fire_at <= :now AND s.id <> ALL(CAST(:passed AS bigint[]))
    ORDER BY s.next_fire_at LIMIT :limit
    FOR UPDATE OF s SKIP LOCKED
    """
)


_SCHEDULE_BUSY = sa.text(
    # Which of these schedules have an unfinished run (overlap skip/wait), for the whole batch at once
    # (finejobs_jobs_schedule_unfinished_idx). The same condition as the "unfinished" of _SCHEDULE_SELECT.
    """
    SELECT DISTINCT schedule_id FROM finejobs_jobs
    WHERE schedule_id = ANY(CAST(:ids AS bigint[])) AND schedule_id IS NOT NULL
      AND state IN ('available', 'running') AND (state = 'running' OR expires_at IS NULL OR expires_at > :now)
    """
)


_SCHEDULE_BATCH_JOBS = sa.text(
    # Every job of a batch, from a JSON array (one element a tick); kind, shard, priority, max_attempts and the
    # payload (its jsonb, as it is) are the schedule's: the row is locked, they are the ones the plan read.
    """
    INSERT INTO finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts, schedule_id,
                               fire_at, created_at)
    SELECT s.kind, s.shard, s.payload, s.priority, u.run_at, u.expires_at, s.max_attempts, s.id, u.fire_at, :now
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(schedule_id bigint, run_at timestamptz, expires_at timestamptz, fire_at timestamptz)
    JOIN finejobs_schedules s ON s.id = u.schedule_id
    ON CONFLICT (shard, schedule_id, fire_at) WHERE schedule_id IS NOT NULL DO NOTHING
    RETURNING id, schedule_id, shard, run_at, fire_at
    """
)


_SCHEDULE_BATCH_ADVANCE = sa.text(
    # Every schedule of a batch moved on, from a JSON array, each with the compare-and-set of _SCHEDULE_ADVANCE
    # (the rows are locked, so it holds: it stays as a guard). A broken schedule gets its error, no next fire.
    """
    UPDATE finejobs_schedules s
    SET next_fire_at = u.next_fire_at, skipped = s.skipped + u.skipped, fired = s.fired + u.fired,
        runs = s.runs + u.runs, last_job_id = COALESCE(u.last_job_id, s.last_job_id),
        last_fire_at = COALESCE(u.last_fire_at, s.last_fire_at), last_error = u.error,
        version = s.version + 1, updated_at = :now
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(id bigint, version bigint, expected timestamptz, next_fire_at timestamptz, skipped bigint,
              fired bigint, runs bigint, last_job_id bigint, last_fire_at timestamptz, error text)
    WHERE s.id = u.id AND s.version = u.version AND s.next_fire_at IS NOT DISTINCT FROM u.expected
    RETURNING s.id
    """
)


_CUSTOM_PLANS = sa.text("SET LOCAL plan_cache_mode = force_custom_plan")


def _rows(conn: sa.Connection, stmt: sa.TextClause, params: Mapping[str, Any]) -> list[Mapping[Any, Any]]:
    """A statement's rows from the psycopg driver under ``conn`` (a batch's thousands, without SQLAlchemy's)."""
    return _run(cast(psycopg.Connection[Any], conn.connection.dbapi_connection), stmt, params)


_NOTIFY_SHARDS = sa.text("SELECT count(pg_notify(:channel, s)) FROM unnest(CAST(:shards AS text[])) AS s")


_SCHEDULE_WAITING = sa.text(
    # Adaptive schedules wait with next_fire_at NULL until their last run finished.
    _SCHEDULE_SELECT
    + """ WHERE NOT s.paused AND s.next_fire_at IS NULL AND s.rule->>'type' = 'adaptive'
            AND (j.id IS NULL OR j.state NOT IN ('available', 'running'))
          ORDER BY s.id"""
)


_SCHEDULE_UPSERT_DECLARED = sa.text(
    # A schedule declared in code: its definition follows the code; paused and the counters stay as the
    # operators left them; next_fire_at is recomputed only when the rule or its bounds changed.
    """
    INSERT INTO finejobs_schedules AS s (name, description, kind, payload, shard, priority, max_attempts, rule,
        timezone, start_at, end_at, misfire, misfire_limit, misfire_grace, overlap, expires_in, next_fire_at,
        source, created_at, updated_at)
    VALUES (:name, :description, :kind, CAST(:payload AS jsonb), :shard, :priority, :max_attempts,
        CAST(:rule AS jsonb), :timezone, :start_at, :end_at, :misfire, :misfire_limit, :misfire_grace, :overlap,
        :expires_in, :next_fire_at, 'code', :now, :now)
    ON CONFLICT (name) DO UPDATE SET
        description = EXCLUDED.description, kind = EXCLUDED.kind, payload = EXCLUDED.payload,
        shard = EXCLUDED.shard, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
        misfire = EXCLUDED.misfire, misfire_limit = EXCLUDED.misfire_limit,
        misfire_grace = EXCLUDED.misfire_grace, overlap = EXCLUDED.overlap, expires_in = EXCLUDED.expires_in,
        rule = EXCLUDED.rule, timezone = EXCLUDED.timezone, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,
        next_fire_at = CASE WHEN s.rule = EXCLUDED.rule AND s.start_at IS NOT DISTINCT FROM EXCLUDED.start_at
                                 AND s.end_at IS NOT DISTINCT FROM EXCLUDED.end_at
                            THEN s.next_fire_at ELSE EXCLUDED.next_fire_at END,
        -- a new start (the rule's or the schedule's) begins a new series: its COUNT counts from zero again
        fired = CASE WHEN s.rule->>'start' IS NOT DISTINCT FROM EXCLUDED.rule->>'start'
                          AND s.start_at IS NOT DISTINCT FROM EXCLUDED.start_at
                     THEN s.fired ELSE 0 END,
        source = 'code', version = s.version + 1, updated_at = EXCLUDED.updated_at
    WHERE (s.description, s.kind, s.payload, s.shard, s.priority, s.max_attempts, s.rule, s.timezone,
           s.misfire, s.misfire_limit, s.misfire_grace, s.overlap, s.source)
          IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.kind, EXCLUDED.payload, EXCLUDED.shard,
           EXCLUDED.priority, EXCLUDED.max_attempts, EXCLUDED.rule, EXCLUDED.timezone, EXCLUDED.misfire,
           EXCLUDED.misfire_limit, EXCLUDED.misfire_grace, EXCLUDED.overlap, EXCLUDED.source)
       OR s.start_at IS DISTINCT FROM EXCLUDED.start_at OR s.end_at IS DISTINCT FROM EXCLUDED.end_at
       OR s.expires_in IS DISTINCT FROM EXCLUDED.expires_in
    RETURNING id
    """
)


_SCHEDULE_ADVANCE = sa.text(
    # The compare-and-set: only the scheduler that read this version and this next_fire_at moves it on.
    """
    UPDATE finejobs_schedules
    SET next_fire_at = :next_fire_at, skipped = skipped + :skipped, fired = fired + :fired,
        last_fire_at = COALESCE(CAST(:last_fire_at AS timestamptz), last_fire_at),
        last_error = NULL, version = version + 1, updated_at = :now
    WHERE id = :id AND version = :version AND next_fire_at IS NOT DISTINCT FROM CAST(:expected AS timestamptz)
    RETURNING id
    """
)


_SCHEDULE_INSERT_JOBS = sa.text(
    # The payload is the schedule's own jsonb, copied as it is (a round trip through Python could change
    # a number such as 1e20 into an integer); the compare-and-set just checked the row is the one planned.
    """
    WITH ins AS (
        INSERT INTO finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts, schedule_id,
                                   fire_at, created_at)
        SELECT u.kind, u.shard, s.payload, u.priority, u.run_at, u.expires_at, u.max_attempts, :schedule_id,
               u.fire_at, :now
        FROM jsonb_to_recordset(CAST(:rows AS jsonb))
             AS u(kind text, shard text, priority smallint, run_at timestamptz,
                  expires_at timestamptz, max_attempts integer, fire_at timestamptz)
        JOIN finejobs_schedules s ON s.id = :schedule_id
        ON CONFLICT (shard, schedule_id, fire_at) WHERE schedule_id IS NOT NULL DO NOTHING
        RETURNING id, shard, run_at, fire_at
    ), counted AS (
        UPDATE finejobs_schedules
        SET runs = runs + (SELECT count(*) FROM ins),
            last_job_id = COALESCE((SELECT id FROM ins ORDER BY fire_at DESC, id DESC LIMIT 1), last_job_id)
        WHERE id = :schedule_id
    )
    SELECT id, (SELECT count(pg_notify(:channel, d.shard))
                FROM (SELECT DISTINCT shard FROM ins WHERE run_at <= :now) AS d) AS notified
    FROM ins ORDER BY fire_at
    """
)


_SCHEDULE_RUNS = sa.text(
    """
    SELECT id AS job_id, fire_at, state, result, run_at, started_at, finished_at, attempt, max_attempts,
           errors -> -1 ->> 'error' AS error_type, errors -> -1 ->> 'message' AS error_message
    FROM finejobs_jobs WHERE schedule_id = :schedule_id
    ORDER BY fire_at DESC, id DESC LIMIT :limit
    """
)


_SCHEDULE_PAUSE_ALL = sa.text(
    """
    UPDATE finejobs_schedules SET paused = :paused, version = version + 1, updated_at = :now
    WHERE paused <> :paused AND (CAST(:kind AS text) IS NULL OR kind = :kind)
    RETURNING name
    """
)


@dataclass(frozen=True)
class Firing:
    """What a scheduler pass writes for one schedule of a batch: its jobs (each with its tick), the ticks it
    skipped and its next fire, or ``error`` (a broken schedule: no next fire until it is updated)."""

    schedule_id: int
    version: int
    expected: datetime | None
    next_fire_at: datetime | None
    jobs: Sequence[tuple[NewJob, datetime]] = ()
    skipped: int = 0
    error: str | None = None


@dataclass(frozen=True)
class FiredBatch:
    """One batch of due schedules: how many were taken, and the new jobs' ids by schedule (tick order)."""

    taken: int
    moved: int = 0
    jobs: dict[int, list[int]] = field(default_factory=dict)


class _LostRace(Exception):
    """A compare-and-set of a batch did not hold: the batch is rolled back."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _schedule_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for a schedule statement; a payload given as JSON text is stored as that text."""
    columns = dict(values)
    if isinstance(columns.get("payload"), str):
        columns["payload"] = sa.cast(sa.literal(columns["payload"], sa.Text), pg.JSONB)
    return columns


class ScheduleStore(StoreBase):
    """Schedule rows."""

    def _schedule_rows(self, conn: sa.Connection, stmt: sa.TextClause, which: str,
                       params: Mapping[str, Any]) -> Sequence[Mapping[Any, Any]]:
        """The rows of a _SCHEDULE_SELECT statement (Citus: read in its own way, citus_schedules)."""
        return citus_schedules.rows(conn, which, params) if self.citus else conn.execute(stmt, params).mappings().all()

    def schedule_get(self, *, name: str, now: datetime) -> ScheduleRow | None:
        with self.transaction(autocommit=True) as conn:
            row = next(iter(self._schedule_rows(conn, _SCHEDULE_GET, "get", {"name": name, "now": now})), None)
        return ScheduleRow.from_row(row) if row is not None else None

    def schedule_list(self, *, now: datetime, search: str | None = None) -> list[ScheduleRow]:
        """Every schedule whose name, description or kind contains ``search`` (any case), by name."""
        pattern = None
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.transaction(autocommit=True) as conn:
            rows = self._schedule_rows(conn, _SCHEDULE_LIST, "list", {"pattern": pattern, "now": now})
        return [ScheduleRow.from_row(r) for r in rows]

    def schedule_insert(self, *, values: Mapping[str, Any], now: datetime) -> int | None:
        """Insert a schedule; returns its id, or None when the name is taken."""
        row = _schedule_columns({k: values[k] for k in ("name", *SCHEDULE_SETTABLE) if k in values})
        stmt = (pg.insert(schedules_table).values(**row, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["name"]).returning(schedules_table.c.id))
        with self.transaction() as conn:
            return conn.execute(stmt).scalar()

    def schedule_upsert_declared(self, *, values: Mapping[str, Any], now: datetime) -> bool:
        """Insert or update a schedule declared in code; True if anything changed."""
        params = dict(values)
        payload = values["payload"]
        params["payload"] = payload if isinstance(payload, str) else json.dumps(payload)
        params["rule"] = json.dumps(values["rule"])
        with self.transaction() as conn:
            return conn.execute(_SCHEDULE_UPSERT_DECLARED, {**params, "now": now}).first() is not None

    def schedule_update(self, *, schedule_id: int, version: int | None, values: Mapping[str, Any],
                        now: datetime) -> bool:
        """Set columns of one schedule (names from SCHEDULE_SETTABLE); with ``version``, only if unchanged."""
        unknown = set(values) - set(SCHEDULE_SETTABLE)
        if unknown:
            raise ValueError(f"not settable on a schedule: {', '.join(sorted(unknown))}")
        t = schedules_table
        stmt = (sa.update(t).where(t.c.id == schedule_id)
                .values(**_schedule_columns(values), version=t.c.version + 1, updated_at=now).returning(t.c.id))
        if version is not None:
            stmt = stmt.where(t.c.version == version)
        with self.transaction() as conn:
            return conn.execute(stmt).first() is not None

    def schedule_delete(self, *, name: str) -> bool:
        t = schedules_table
        with self.transaction() as conn:
            return conn.execute(sa.delete(t).where(t.c.name == name).returning(t.c.id)).first() is not None

    def schedule_set_paused_all(self, *, paused: bool, now: datetime, kind: str | None = None) -> list[str]:
        """Pause (or unpause) every schedule, or every schedule of ``kind``; returns the names changed."""
        with self.transaction() as conn:
            return sorted(conn.execute(_SCHEDULE_PAUSE_ALL, {"paused": paused, "now": now, "kind": kind}).scalars())

    def schedule_due(self, *, now: datetime, limit: int = 100) -> list[ScheduleRow]:
        """Active schedules whose next fire time has come, the most overdue first."""
        with self.transaction(autocommit=True) as conn:
            rows = self._schedule_rows(conn, _SCHEDULE_DUE, "due", {"now": now, "limit": limit})
        return [ScheduleRow.from_row(r) for r in rows]

    def schedule_fire_due(self, *, now: datetime, limit: int, passed: Sequence[int],
                          decide: Callable[[list[ScheduleRow]], list[Firing]]) -> FiredBatch | None:
        """One batch, in one short transaction: lock up to ``limit`` due schedules (SKIP LOCKED: other
        schedulers take other rows; not those in ``passed``), let ``decide`` (pure Python, no database)
        say what each one does, then insert all their jobs in one statement and move all of them on in
        another. Returns None when a compare-and-set did not hold (nothing is written)."""
        try:
            with self.transaction() as conn:
                # Custom plans: a generic plan cached while the job table was empty scans it for every batch.
                conn.execute(_CUSTOM_PLANS)
                taken = _rows(conn, _SCHEDULE_TAKE_DUE, {"now": now, "limit": limit, "passed": list(passed)})
                if not taken:
                    return FiredBatch(taken=0)
                watched = [r["id"] for r in taken if r["overlap"] != "allow"]
                busy = set(conn.execute(_SCHEDULE_BUSY, {"ids": watched, "now": now}).scalars()) if watched else set()
                firings = decide([ScheduleRow.from_row({**r, "unfinished": r["id"] in busy}) for r in taken])
                made = self._insert_batch_jobs(conn, firings, now) if any(f.jobs for f in firings) else {}
                moved = self._advance_batch(conn, firings, made, now) if firings else 0
                return FiredBatch(taken=len(taken), moved=moved,
                                  jobs={sid: [job_id for job_id, _ in ids] for sid, ids in made.items()})
        except _LostRace:
            return None

    @staticmethod
    def _insert_batch_jobs(conn: sa.Connection, firings: Sequence[Firing],
                           now: datetime) -> dict[int, list[tuple[int, datetime]]]:
        rows = json.dumps([
            {"schedule_id": f.schedule_id, "run_at": j.run_at.isoformat(), "expires_at": _iso(j.expires_at),
             "fire_at": fire.isoformat()}
            for f in firings for j, fire in f.jobs
        ])
        made: dict[int, list[tuple[int, datetime]]] = {}
        shards: set[str] = set()
        for r in _rows(conn, _SCHEDULE_BATCH_JOBS, {"rows": rows, "now": now}):
            made.setdefault(r["schedule_id"], []).append((r["id"], r["fire_at"]))
            if r["run_at"] <= now:
                shards.add(r["shard"])
        for ids in made.values():
            ids.sort(key=lambda pair: (pair[1], pair[0]))
        if shards:
            conn.execute(_NOTIFY_SHARDS, {"channel": NOTIFY_CHANNEL, "shards": sorted(shards)})
        return made

    @staticmethod
    def _advance_batch(conn: sa.Connection, firings: Sequence[Firing], made: Mapping[int, list[tuple[int, datetime]]],
                       now: datetime) -> int:
        rows = json.dumps([
            {"id": f.schedule_id, "version": f.version, "expected": _iso(f.expected),
             "next_fire_at": _iso(f.next_fire_at), "skipped": f.skipped, "fired": len(f.jobs),
             "runs": len(made.get(f.schedule_id, ())),
             "last_job_id": made[f.schedule_id][-1][0] if made.get(f.schedule_id) else None,
             "last_fire_at": _iso(max((fire for _, fire in f.jobs), default=None)), "error": f.error}
            for f in firings
        ])
        moved = len(_rows(conn, _SCHEDULE_BATCH_ADVANCE, {"rows": rows, "now": now}))
        if moved != len(firings):
            raise _LostRace
        return moved

    def schedule_waiting(self, *, now: datetime) -> list[ScheduleRow]:
        """Adaptive schedules whose last run has finished (or is gone) and that have no next fire yet."""
        with self.transaction(autocommit=True) as conn:
            rows = self._schedule_rows(conn, _SCHEDULE_WAITING, "waiting", {"now": now})
        return [ScheduleRow.from_row(r) for r in rows]

    def schedule_fire(
        self, *, schedule_id: int, version: int, expected: datetime | None, next_fire_at: datetime | None,
        jobs: Sequence[tuple[NewJob, datetime]], skipped: int, now: datetime, fired: int = 0,
    ) -> list[int] | None:
        """Move next_fire_at from ``expected`` to ``next_fire_at`` and insert one job per (job, fire_at),
        in one transaction; ``fired`` ticks are added to the schedule's count of runs (what a COUNT counts).
        Returns the new job ids, or None when another scheduler (or an operator) got there first. A tick
        that already has its job is not inserted again."""
        last_fire = max((fire for _, fire in jobs), default=None)
        advance = {"id": schedule_id, "version": version, "expected": expected, "next_fire_at": next_fire_at,
                   "skipped": skipped, "fired": fired, "last_fire_at": last_fire, "now": now}
        with self.transaction() as conn:
            if conn.execute(_SCHEDULE_ADVANCE, advance).first() is None:
                return None
            if not jobs:
                return []
            rows = json.dumps([
                {"kind": j.kind, "shard": j.shard, "priority": j.priority,
                 "run_at": j.run_at.isoformat(), "expires_at": j.expires_at.isoformat() if j.expires_at else None,
                 "max_attempts": j.max_attempts, "fire_at": fire.isoformat()}
                for j, fire in jobs
            ])
            params = {"schedule_id": schedule_id, "rows": rows, "now": now, "channel": NOTIFY_CHANNEL}
            return list(conn.execute(_SCHEDULE_INSERT_JOBS, params).scalars())

    def schedule_set_error(self, *, schedule_id: int, error: str, now: datetime) -> None:
        t = schedules_table
        with self.transaction() as conn:
            conn.execute(sa.update(t).where(t.c.id == schedule_id).values(last_error=error[:2000]))

    def schedule_runs(self, *, schedule_id: int, limit: int = 10) -> list[ScheduleRunRow]:
        """The jobs a schedule made, newest tick first (finished jobs are pruned after their retention)."""
        with self.transaction(autocommit=True) as conn:
            rows = conn.execute(_SCHEDULE_RUNS, {"schedule_id": schedule_id, "limit": limit}).mappings().all()
        return [
            ScheduleRunRow(job_id=r["job_id"], fire_at=r["fire_at"], state=r["state"], result=r["result"],
                           run_at=r["run_at"], started_at=r["started_at"], finished_at=r["finished_at"],
                           attempt=r["attempt"], max_attempts=r["max_attempts"],
                           error=f"{r['error_type']}: {r['error_message']}" if r["error_type"] else None)
            for r in rows
        ]
