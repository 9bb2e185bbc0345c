"""The SQL of the operations API: filtered keyset pages, bounded counts, bulk actions in batches, counts.

Every statement is bounded. A page examines at most ``scan`` rows past its cursor, newest first, through
an index that fits the state and shard of the filter (the primary key, or the partial index of finished
states, in the shard's partition); the other conditions (kind, schedule, error text, times) are checked
on those rows only, and when the examined rows run out before the page is full, the page says where to go
on. Counts stop at a cap. A bulk action changes at most ``limit`` rows per statement, each batch its own
short transaction. The SQL text is made of fixed fragments; every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from finejobs.filters import JobFilter
from finejobs.jobs import FINAL_STATES, Job, JobState
from finejobs.store._base import StoreBase

# Which stored states an action may move a job out of.
ACTION_STATES: dict[str, tuple[str, ...]] = {
    "retry": ("failed", "expired", "cancelled"),
    "cancel": ("available", "running"),
    "delete": ("available", "succeeded", "failed", "expired", "cancelled"),  # never a running job
}


@dataclass(frozen=True)
class PageRows:
    """One page of jobs; ``next_before`` is where the next page starts (None: nothing older)."""

    jobs: list[Job]
    next_before: int | None
    examined: int


def _where(filt: JobFilter, now: datetime, schedule_id: int | None) -> tuple[list[str], list[str], dict[str, Any]]:
    """The filter as (indexed conditions, other conditions, parameters)."""
    indexed: list[str] = []
    other: list[str] = []
    params: dict[str, Any] = {"now": now}
    if filt.state is JobState.SCHEDULED:
        indexed.append("state = 'available'")
        other.append("run_at > :now")
    elif filt.state is JobState.AVAILABLE:
        indexed.append("state = 'available'")
        other.append("run_at <= :now")
    elif filt.state is not None:
        indexed.append("state = :state")
        params["state"] = filt.state.value
    if filt.shard is not None:
        indexed.append("shard = :shard")
        params["shard"] = filt.shard
    if filt.kind is not None:
        other.append("kind = :kind")
        params["kind"] = filt.kind
    if filt.schedule is not None:
        other.append("schedule_id = :schedule_id")
        params["schedule_id"] = -1 if schedule_id is None else schedule_id
    for name, sql in (("created_after", "created_at >= :created_after"),
                      ("created_before", "created_at < :created_before"),
                      ("finished_after", "finished_at >= :finished_after"),
                      ("finished_before", "finished_at < :finished_before")):
        if getattr(filt, name) is not None:
            other.append(sql)
            params[name] = getattr(filt, name)
    if filt.error is not None:
        other.append("(errors -> -1 ->> 'message') ILIKE :error ESCAPE '\\'")
        params["error"] = "%" + filt.error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return indexed, other, params


def _and(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "true"


class OperationsStore(StoreBase):
    """Reads and bulk actions for operators (finejobs.admin calls these)."""

    def schedule_id_of(self, *, name: str) -> int | None:
        with self.transaction(autocommit=True) as conn:
            value = conn.execute(sa.text("SELECT id FROM finejobs_schedules WHERE name = :name"),
                                 {"name": name}).scalar()
        return None if value is None else int(value)

    def job_page(self, *, filt: JobFilter, now: datetime, before: int | None, limit: int, scan: int,
                 schedule_id: int | None = None) -> PageRows:
        """Up to ``limit`` matching jobs with ids below ``before``, newest first, examining at most ``scan``."""
        indexed, other, params = _where(filt, now, schedule_id)
        if before is not None:
            indexed.append("id < :before")
            params["before"] = before
        params.update(scan=scan, limit=limit + 1)
        stmt = sa.text(
            f"WITH examined AS (SELECT * FROM finejobs_jobs WHERE {_and(indexed)} ORDER BY id DESC LIMIT :scan), "
            f"hits AS (SELECT * FROM examined WHERE {_and(other)} ORDER BY id DESC LIMIT :limit) "
            "SELECT (SELECT min(id) FROM examined) AS examined_low, (SELECT count(*) FROM examined) AS examined_n, "
            "hits.* FROM (SELECT 1) AS one LEFT JOIN hits ON true ORDER BY hits.id DESC"
        )
        with self.transaction(autocommit=True) as conn:
            rows = list(conn.execute(stmt, params).mappings())
        low, examined = rows[0]["examined_low"], int(rows[0]["examined_n"])
        jobs = [Job.from_row(r, now=now) for r in rows if r["id"] is not None]
        if len(jobs) > limit:
            return PageRows(jobs[:limit], jobs[limit - 1].id, examined)
        if examined >= scan and low is not None:
            return PageRows(jobs, int(low), examined)  # the examined rows ran out, maybe not the matches
        return PageRows(jobs, None, examined)

    def job_count(self, *, filt: JobFilter, now: datetime, cap: int,
                  schedule_id: int | None = None) -> tuple[int, bool]:
        """How many jobs match; at most ``cap`` rows are examined (the bool: the count may be higher)."""
        indexed, other, params = _where(filt, now, schedule_id)
        params["cap"] = cap
        stmt = sa.text(
            f"WITH examined AS (SELECT * FROM finejobs_jobs WHERE {_and(indexed)} LIMIT :cap) "
            f"SELECT count(*) FILTER (WHERE {_and(other)}) AS n, count(*) AS examined FROM examined")
        with self.transaction(autocommit=True) as conn:
            row = conn.execute(stmt, params).one()
        return int(row.n), int(row.examined) >= cap

    def job_bulk(self, *, action: str, filt: JobFilter, now: datetime, after: int, limit: int, reason: str = "",
                 schedule_id: int | None = None) -> tuple[int, int | None]:
        """One batch of a bulk action over the matching jobs with ids above ``after``: at most ``limit`` are
        locked (SKIP LOCKED) and changed in one statement. Returns how many changed and the highest id
        examined (None: nothing was left). A retry whose unique_key an unfinished job holds is left as is."""
        indexed, other, params = _where(filt, now, schedule_id)
        states = ACTION_STATES[action]
        params.update(after=after, limit=limit, states=list(states), now_iso=now.isoformat(), reason=reason)
        pick = (f"SELECT id, shard FROM finejobs_jobs WHERE {_and(indexed + other)} AND state = ANY(:states) "
                "AND id > :after ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED")
        change = _ACTIONS[action]
        with self.transaction() as conn:
            picked = [(int(r.id), str(r.shard)) for r in conn.execute(sa.text(pick), params)]
            if not picked:
                return 0, None
            ids = [i for i, _ in picked]
            shards = [s for _, s in picked]
            try:
                with conn.begin_nested():
                    changed = conn.execute(change, {**params, "ids": ids, "shards": shards}).rowcount
                return changed, ids[-1]
            except sa.exc.IntegrityError:
                pass
            changed = 0
            for job_id, shard in picked:  # one at a time: keep those whose unique_key is held
                try:
                    with conn.begin_nested():
                        changed += conn.execute(change, {**params, "ids": [job_id], "shards": [shard]}).rowcount
                except sa.exc.IntegrityError:
                    continue
            return changed, ids[-1]

    def job_delete(self, *, job_id: int, now: datetime) -> Job | None:
        """Delete one job that is not running; returns it as it was (None: no such job, or it is running)."""
        stmt = sa.text("DELETE FROM finejobs_jobs WHERE id = :id AND state <> 'running' RETURNING *")
        with self.transaction(autocommit=True) as conn:
            row = conn.execute(stmt, {"id": job_id}).mappings().first()
        return None if row is None else Job.from_row(row, now=now)

    def job_counts(self, *, now: datetime, cap: int) -> tuple[list[tuple[str, str, str, int]], bool]:
        """(state, kind, shard, count) rows. Waiting and running jobs are counted exactly (their partial
        indexes); each finished state through its partial index, the newest ``cap`` rows at most (the bool
        says whether a count stopped there)."""
        rows: list[tuple[str, str, str, int]] = []
        capped = False
        with self.transaction(autocommit=True) as conn:
            for r in conn.execute(_UNFINISHED_COUNTS, {"now": now}):
                rows.append((r.state, r.kind, r.shard, int(r.n)))
            for state in sorted(s.value for s in FINAL_STATES):
                found = [(state, r.kind, r.shard, int(r.n)) for r in conn.execute(
                    _FINISHED_COUNTS, {"state": state, "cap": cap + 1})]
                if sum(n for *_, n in found) > cap:
                    capped = True
                rows += found
        return rows, capped

    def job_lag(self, *, now: datetime) -> dict[str, float]:
        """Per shard, the age in seconds of the oldest job that may run now (0 for none waiting)."""
        with self.transaction(autocommit=True) as conn:
            return {r.shard: max(0.0, (now - r.oldest).total_seconds())
                    for r in conn.execute(_LAG, {"now": now})}

    def job_expiring(self, *, now: datetime, until: datetime) -> dict[str, int]:
        """Per shard, waiting jobs whose expires_at falls before ``until`` (through the expiry index)."""
        with self.transaction(autocommit=True) as conn:
            return {r.shard: int(r.n) for r in conn.execute(_EXPIRING, {"now": now, "until": until})}


_UNFINISHED_COUNTS = sa.text(
    "SELECT CASE WHEN state = 'available' AND run_at > :now THEN 'scheduled' ELSE state END AS state, "
    "kind, shard, count(*) AS n FROM finejobs_jobs WHERE state IN ('available', 'running') GROUP BY 1, 2, 3")
_FINISHED_COUNTS = sa.text(
    "SELECT kind, shard, count(*) AS n FROM (SELECT kind, shard FROM finejobs_jobs WHERE state = :state "
    "ORDER BY state, id DESC LIMIT :cap) AS newest GROUP BY 1, 2")
_LAG = sa.text(
    "SELECT shard, min(run_at) AS oldest FROM finejobs_jobs WHERE state = 'available' AND run_at <= :now "
    "GROUP BY shard")
_EXPIRING = sa.text(
    "SELECT shard, count(*) AS n FROM finejobs_jobs WHERE state = 'available' AND expires_at IS NOT NULL "
    "AND expires_at >= :now AND expires_at < :until GROUP BY shard")

_MATCH = "FROM unnest(CAST(:ids AS bigint[]), CAST(:shards AS text[])) AS p(id, shard) " \
         "WHERE j.id = p.id AND j.shard = p.shard AND j.state = ANY(:states)"
_ACTIONS = {
    "retry": sa.text(
        "UPDATE finejobs_jobs AS j SET state = 'available', run_at = :now, finished_at = NULL, "
        "max_attempts = GREATEST(j.max_attempts, j.attempt + 1), "
        "expires_at = CASE WHEN j.expires_at IS NOT NULL AND j.expires_at <= :now THEN NULL ELSE j.expires_at END "
        + _MATCH),
    "cancel": sa.text(
        "UPDATE finejobs_jobs AS j SET state = 'cancelled', finished_at = :now, lease_owner = NULL, "
        "lease_expires_at = NULL, errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempt, "
        "'at', CAST(:now_iso AS text), 'error', 'Cancelled', 'message', CAST(:reason AS text), 'traceback', NULL, "
        "'worker', NULL)) " + _MATCH),
    "delete": sa.text("DELETE FROM finejobs_jobs AS j USING (SELECT * FROM unnest(CAST(:ids AS bigint[]), "
                      "CAST(:shards AS text[])) AS q(id, shard)) AS p "
                      "WHERE j.id = p.id AND j.shard = p.shard AND j.state = ANY(:states)"),
}
