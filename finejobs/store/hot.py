"""The hot path: claim (SKIP LOCKED), batched completion, heartbeat, release, and the maintenance the
workers do (rescue of lost leases, expiry, pruning), with the statements beside the methods that run them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from finejobs.jobs import FINAL_STATES, Job, JobState, Outcome
from finejobs.store import citus
from finejobs.store._base import _run
from finejobs.store.groups import GroupStore
from finejobs.store.tables import (
    _LOCK_EXPIRE,
    _LOCK_PRUNE,
    _LOCK_RESCUE,
    _SHARD_LOCK_EXPIRE,
    _SHARD_LOCK_PRUNE,
    _SHARD_LOCK_RESCUE,
)


@dataclass(frozen=True)
class MaintenanceResult:
    rescued: int = 0
    expired: int = 0
    pruned: dict[str, int] = field(default_factory=dict)


_CLAIM = sa.text(
    # One shard per statement: with `shard = :shard` leading the claim index, the ordered index scan is the
    # plan even from stale statistics (without it, a planner may bitmap-scan and sort the whole backlog).
    """
    WITH picked AS (
        SELECT id FROM finejobs_jobs
        WHERE state = 'available' AND shard = :shard AND run_at <= :now
          AND kind = ANY(CAST(:kinds AS text[]))
          AND (expires_at IS NULL OR expires_at > :now)
        ORDER BY priority DESC, run_at, id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE finejobs_jobs j
    SET state = 'running', attempt = j.attempt + 1, claims = j.claims + 1, lease_owner = :owner,
        lease_expires_at = :lease_deadline, started_at = :now
    WHERE j.shard = :shard AND j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.*
    """
)


_CLAIM_SHARDS = sa.text(
    # Several shards in one statement, at most :share jobs from each: the same ordered scan per shard as
    # _CLAIM (a lateral subquery; each shard's partition is pruned at run time), in one round trip.
    """
    WITH picked AS MATERIALIZED (
        SELECT p.id
        FROM unnest(CAST(:shards AS text[]), CAST(:shares AS integer[])) AS s(shard, share)
        CROSS JOIN LATERAL (
            SELECT c.id FROM finejobs_jobs c
            WHERE c.state = 'available' AND c.shard = s.shard AND c.run_at <= :now
              AND c.kind = ANY(CAST(:kinds AS text[]))
              AND (c.expires_at IS NULL OR c.expires_at > :now)
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT s.share
            FOR UPDATE SKIP LOCKED
        ) AS p
    )
    UPDATE finejobs_jobs j
    SET state = 'running', attempt = j.attempt + 1, claims = j.claims + 1, lease_owner = :owner,
        lease_expires_at = :lease_deadline, started_at = :now
    WHERE j.shard = ANY(CAST(:shards AS text[])) AND j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.*
    """
)


_PENDING_SHARDS = sa.text(
    # A skip scan over the claim index: one index probe per shard that has waiting jobs.
    """
    WITH RECURSIVE s AS (
        (SELECT shard FROM finejobs_jobs WHERE state = 'available' ORDER BY shard LIMIT 1)
        UNION ALL
        SELECT (SELECT shard FROM finejobs_jobs WHERE state = 'available' AND shard > s.shard
                ORDER BY shard LIMIT 1)
        FROM s WHERE s.shard IS NOT NULL
    )
    SELECT shard FROM s WHERE shard IS NOT NULL
    """
)


@functools.cache
def _complete_sql(*, in_shard: bool, returns: bool = False, grouped: bool = False,
                  on_citus: bool = False) -> sa.TextClause:
    # The outcomes are materialized once and the rows found by primary key: a nested loop over the
    # function scan would parse the JSON once per candidate row. With in_shard, the statement names the
    # shard, so it touches that shard's partition only (pruned at executor start, generic plans too).
    # With returns, the outcomes also carry return values (JSON text, parsed here): only a batch holding one
    # runs that form, so that plain jobs' completions cost what they did before return values existed.
    # With grouped, the statement also returns each row's group and new state, for the group counters.
    # on_citus: the same without CASE or STABLE functions over columns (Citus refuses them in an UPDATE): a NULL
    # error makes the appended array NULL, and COALESCE then keeps the errors as they were.
    errors = f"COALESCE(j.errors || {citus.as_array('u.error')}, j.errors)" if on_citus else \
        "CASE WHEN u.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(u.error) END"
    shard = "j.shard = :shard AND " if in_shard else ""
    column, assign = (", return_value text", "\n        return_value = CAST(u.return_value AS jsonb),") \
        if returns else ("", "")
    return sa.text(f"""
    WITH u AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS x(id bigint, attempt integer, claims integer, state text, run_at timestamptz,
                 finished_at timestamptz, error jsonb, uncount integer, result text{column})
    )
    UPDATE finejobs_jobs j
    SET state = u.state,
        run_at = COALESCE(u.run_at, j.run_at),
        attempt = j.attempt - u.uncount,
        result = u.result,{assign}
        finished_at = u.finished_at,
        errors = {errors},
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM u
    WHERE {shard}j.id = ANY(ARRAY(SELECT id FROM u)) AND j.id = u.id
      AND j.state = 'running' AND j.attempt = u.attempt AND j.lease_owner = :owner
      AND (u.claims IS NULL OR j.claims = u.claims)
    RETURNING j.id{", j.group_id, j.state" if grouped else ""}
    """)


_COMPLETE_IN_SHARD = _complete_sql(in_shard=True)  # the plain form (tests read its plan)


_COMPLETE_SHARDS_APART = 2  # a batch with outcomes of more shards than this is written in one statement


_HEARTBEAT = sa.text(
    """
    WITH u AS MATERIALIZED (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[])) AS x(id, attempt)
    )
    UPDATE finejobs_jobs j SET lease_expires_at = :deadline
    FROM u
    WHERE j.id = ANY(CAST(:ids AS bigint[])) AND j.id = u.id
      AND j.attempt = u.attempt AND j.state = 'running' AND j.lease_owner = :owner
    RETURNING j.id
    """
)


_HEARTBEAT_CITUS = sa.text(
    # Citus: without a shard the statement goes to every Citus shard, and a multi-shard UPDATE cannot join the
    # (id, attempt) pairs: they are matched as "id:attempt" keys (IMMUTABLE casts and text concatenation).
    """
    UPDATE finejobs_jobs SET lease_expires_at = :deadline
    WHERE id = ANY(CAST(:ids AS bigint[])) AND state = 'running' AND lease_owner = :owner
      AND CAST(id AS text) || ':' || CAST(attempt AS text) = ANY(CAST(:keys AS text[]))
    RETURNING id
    """
)


# Maintenance statements come in two forms: over every shard, or over one (`in_shard`: the statement names
# the shard, so it reads and writes that shard's partition only).
def _in(in_shard: bool, alias: str = "") -> str:
    return f"{alias}shard = :shard AND " if in_shard else ""


def _rescue_sql(*, mine: bool, in_shard: bool = False) -> sa.TextClause:
    # A lease that ran out (its worker died), or, with mine=True, jobs this worker gives up at shutdown.
    which = (
        "lease_owner = :owner AND id = ANY(CAST(:ids AS bigint[]))" if mine else "lease_expires_at < :now"
    )
    return sa.text(
        f"""
        WITH stale AS (
            SELECT id FROM finejobs_jobs
            WHERE {_in(in_shard)}state = 'running' AND {which}
            ORDER BY lease_expires_at LIMIT :limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE finejobs_jobs j
        SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed'
                         WHEN j.expires_at IS NOT NULL AND j.expires_at <= :now THEN 'expired'
                         ELSE 'available' END,
            run_at = :now,
            finished_at = CASE WHEN j.attempt >= j.max_attempts
                                 OR (j.expires_at IS NOT NULL AND j.expires_at <= :now)
                               THEN CAST(:now AS timestamptz) END,
            errors = j.errors || {citus.error_entry(attempt="j.attempt", error="CAST(:error AS text)",
                                                    message="CAST(:message AS text)", worker="j.lease_owner")},
            lease_owner = NULL,
            lease_expires_at = NULL
        WHERE {_in(in_shard, "j.")}j.id = ANY(ARRAY(SELECT id FROM stale))
        RETURNING j.id, j.state, j.group_id
        """
    )


_RESCUE_EXPIRED_LEASES = {False: _rescue_sql(mine=False), True: _rescue_sql(mine=False, in_shard=True)}


_RESCUE_MINE = _rescue_sql(mine=True)


_RESCUE_MINE_IN_SHARD = _rescue_sql(mine=True, in_shard=True)  # Citus: one router statement a shard


_SHARDS_OF_MINE = sa.text(
    "SELECT shard FROM finejobs_jobs WHERE id = ANY(CAST(:ids AS bigint[])) AND state = 'running' "
    "AND lease_owner = :owner GROUP BY shard")


def _expire_sql(*, in_shard: bool) -> sa.TextClause:
    return sa.text(f"""
    WITH overdue AS (
        SELECT id FROM finejobs_jobs
        WHERE {_in(in_shard)}state = 'available' AND expires_at IS NOT NULL AND expires_at <= :now
        ORDER BY expires_at LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE finejobs_jobs j
    SET state = 'expired', finished_at = :now,
        errors = j.errors || {citus.error_entry(attempt="j.attempt", error="'Expired'",
                                                message="'not started before expires_at'", worker="NULL")}
    WHERE {_in(in_shard, "j.")}j.id = ANY(ARRAY(SELECT id FROM overdue))
    RETURNING j.id, j.group_id
    """)


def _prune_sql(*, in_shard: bool) -> sa.TextClause:
    return sa.text(f"""
    DELETE FROM finejobs_jobs WHERE {_in(in_shard)}id = ANY(ARRAY(
        SELECT id FROM finejobs_jobs
        WHERE {_in(in_shard)}state = :state AND finished_at < :cutoff
        ORDER BY finished_at LIMIT :limit
    ))
    """)


_EXPIRE_OVERDUE = {False: _expire_sql(in_shard=False), True: _expire_sql(in_shard=True)}


_PRUNE = {False: _prune_sql(in_shard=False), True: _prune_sql(in_shard=True)}


_TRY_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key)")


_TRY_SHARD_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key, :shard_key)")


def _shard_lock_key(shard: str) -> int:
    """A stable int4 for the advisory lock of one shard (blake2b: the same in every process)."""
    return int.from_bytes(hashlib.blake2b(shard.encode("utf-8"), digest_size=4).digest(), "big", signed=True)


def _claim_order(job: Job) -> tuple[int, datetime, int]:
    return (-job.priority, job.run_at, job.id)


class HotPathStore(GroupStore):
    """Claim, completion, heartbeat, release and maintenance."""

    def job_claim(
        self, *, owner: str, shard: str, kinds: Sequence[str], limit: int, lease: timedelta, now: datetime
    ) -> list[Job]:
        """Claim up to ``limit`` due, unexpired jobs of the given kinds in one shard, in claim order."""
        if limit <= 0 or not kinds:
            return []
        params = {"owner": owner, "shard": shard, "kinds": list(kinds), "limit": limit, "now": now,
                  "lease_deadline": now + lease}
        rows = self._fast(_CLAIM, params)
        return sorted((Job.from_row(r, now=now) for r in rows), key=_claim_order)

    def job_claim_shards(
        self, *, owner: str, shards: Sequence[str], kinds: Sequence[str], share: int | Sequence[int],
        lease: timedelta, now: datetime,
    ) -> list[Job]:
        """Claim up to ``share`` due jobs from each of ``shards`` in one statement (a number for all, or one per
        shard), in claim order within each shard."""
        shares = [share] * len(shards) if isinstance(share, int) else list(share)
        if len(shares) != len(shards):
            raise ValueError(f"{len(shares)} shares for {len(shards)} shards")
        wanted = [(shard, n) for shard, n in zip(shards, shares, strict=True) if n > 0]
        if not kinds or not wanted:
            return []
        if len(wanted) == 1:
            return self.job_claim(owner=owner, shard=wanted[0][0], kinds=kinds, limit=wanted[0][1], lease=lease,
                                  now=now)
        if self.citus:  # one router statement a shard: Citus refuses FOR UPDATE over several shards
            return [job for shard, n in wanted
                    for job in self.job_claim(owner=owner, shard=shard, kinds=kinds, limit=n, lease=lease,
                                              now=now)]
        params = {"owner": owner, "shards": [w[0] for w in wanted], "shares": [w[1] for w in wanted],
                  "kinds": list(kinds), "now": now, "lease_deadline": now + lease}
        rows = self._fast(_CLAIM_SHARDS, params)
        return sorted((Job.from_row(r, now=now) for r in rows), key=_claim_order)

    def shard_list_pending(self) -> list[str]:
        """The shards that have waiting jobs (due or scheduled), in name order."""
        with self.transaction(autocommit=True) as conn:
            return list(conn.execute(citus.PENDING_SHARDS if self.citus else _PENDING_SHARDS).scalars())

    def job_complete_many(self, outcomes: Sequence[Outcome], *, owner: str) -> set[int]:
        """Write many outcomes in one statement; returns the ids whose outcome was applied.

        Each write is guarded by state='running', the attempt and the lease owner: an outcome for a
        job that was rescued, cancelled or finished meanwhile changes nothing.
        """
        by_shard: dict[str | None, list[dict[str, Any]]] = {}
        for o in outcomes:
            by_shard.setdefault(o.shard, []).append(
                {"id": o.job_id, "attempt": o.attempt, "claims": o.claims, "state": o.state, "uncount": o.uncount,
                 "run_at": o.run_at.isoformat() if o.run_at else None,
                 "finished_at": o.finished_at.isoformat() if o.finished_at else None,
                 "error": o.error.to_json() if o.error else None, "result": o.result,
                 **({} if o.return_value is None else {"return_value": o.return_value})})
        on_citus = self.citus
        if len(by_shard) > _COMPLETE_SHARDS_APART and not on_citus:  # Citus: always one (router) statement a shard
            # Outcomes of many shards (a worker serving many): one statement over every partition's primary
            # key costs less than a round trip per shard.
            by_shard = {None: [row for rows in by_shard.values() for row in rows]}
        if any(o.group_id is not None for o in outcomes):
            return self._complete_grouped(by_shard, owner=owner, on_citus=on_citus, now=max(
                (o.finished_at for o in outcomes if o.finished_at is not None), default=None))
        applied: set[int] = set()
        for shard, rows in by_shard.items():  # one statement per shard: each touches one partition
            stmt = _complete_sql(in_shard=shard is not None, returns=any("return_value" in row for row in rows),
                                 on_citus=on_citus)
            params = {"owner": owner, "rows": json.dumps(rows), "shard": shard}
            applied.update(r["id"] for r in self._fast(stmt, params))
        return applied

    def _complete_grouped(self, by_shard: dict[str | None, list[dict[str, Any]]], *, owner: str,
                          now: datetime | None, on_citus: bool = False) -> set[int]:
        """A batch with members of groups: the outcomes and the groups' counters in one transaction."""
        applied: set[int] = set()
        with self.transaction() as conn:
            changes = []
            for shard, rows in by_shard.items():
                stmt = _complete_sql(in_shard=shard is not None, returns=any("return_value" in row for row in rows),
                                     grouped=True, on_citus=on_citus)
                for r in _run(conn, stmt, {"owner": owner, "rows": json.dumps(rows), "shard": shard}):
                    applied.add(r["id"])
                    changes.append((r["group_id"], "running", r["state"]))
            if now is not None:  # else no outcome ended its job (retries, snoozes): no counter moves
                self.apply_group_changes(conn, changes, now=now)
        return applied

    def job_heartbeat(
        self, *, owner: str, held: Mapping[int, int], lease: timedelta, now: datetime
    ) -> set[int]:
        """Extend the leases of ``held`` (id -> attempt); returns the ids this worker still holds."""
        if not held:
            return set()
        params: dict[str, Any] = {"owner": owner, "ids": list(held), "deadline": now + lease}
        if self.citus:
            params["keys"] = [f"{job_id}:{attempt}" for job_id, attempt in held.items()]
            return {r["id"] for r in self._fast(_HEARTBEAT_CITUS, params)}
        params["attempts"] = list(held.values())
        return {r["id"] for r in self._fast(_HEARTBEAT, params)}

    def job_release(
        self, *, owner: str, ids: Sequence[int], now: datetime, error: str, message: str
    ) -> dict[int, JobState]:
        """Give up this worker's running jobs (at shutdown), as a lost lease would: the attempt counts."""
        if not ids:
            return {}
        params = {"owner": owner, "ids": list(ids), "now": now, "now_iso": now.isoformat(),
                  "limit": len(ids), "error": error, "message": message}
        with self.transaction() as conn:
            if self.citus:  # one router statement a shard
                shards = conn.execute(_SHARDS_OF_MINE, params).scalars().all()
                rows = [row for shard in shards
                        for row in conn.execute(_RESCUE_MINE_IN_SHARD, {**params, "shard": shard}).all()]
            else:
                rows = list(conn.execute(_RESCUE_MINE, params).all())
            self.apply_group_changes(conn, [(r.group_id, "running", r.state) for r in rows], now=now)
        return {row.id: JobState(row.state) for row in rows}

    def job_rescue_expired_leases(
        self, *, now: datetime, limit: int = 1000, shards: Sequence[str] | None = None
    ) -> dict[int, JobState]:
        """Return jobs whose lease ran out to ``available`` (or end them if out of attempts or expired).

        ``shards``: only those shards, one statement each (each touches its shard's partition only).
        """
        params = {"now": now, "now_iso": now.isoformat(), "limit": limit, "error": "LeaseExpired",
                  "message": "the worker's lease ran out before the job finished (worker died or hung)"}
        found: dict[int, JobState] = {}
        with self.transaction() as conn:
            for shard in self._locked_shards(conn, _LOCK_RESCUE, _SHARD_LOCK_RESCUE, shards,
                                             citus.SHARDS_WITH_LOST_LEASES, params):
                rows = conn.execute(_RESCUE_EXPIRED_LEASES[shard is not None], {**params, "shard": shard}).all()
                found.update((row.id, JobState(row.state)) for row in rows)
                self.apply_group_changes(conn, [(r.group_id, "running", r.state) for r in rows], now=now)
        return found

    def job_expire_overdue(self, *, now: datetime, limit: int = 1000, shards: Sequence[str] | None = None) -> int:
        """End waiting jobs whose expires_at has passed as ``expired``."""
        params = {"now": now, "now_iso": now.isoformat(), "limit": limit}
        count = 0
        with self.transaction() as conn:
            for shard in self._locked_shards(conn, _LOCK_EXPIRE, _SHARD_LOCK_EXPIRE, shards,
                                             citus.SHARDS_WITH_OVERDUE, params):
                rows = conn.execute(_EXPIRE_OVERDUE[shard is not None], {**params, "shard": shard}).all()
                count += len(rows)
                self.apply_group_changes(conn, [(r.group_id, "available", "expired") for r in rows], now=now)
        return count

    def job_prune_finished(
        self, *, retention: Mapping[JobState, timedelta], now: datetime, limit: int = 1000,
        shards: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Delete finished jobs older than their state's retention, at most ``limit`` per state (and shard)."""
        for state in retention:
            if state not in FINAL_STATES:
                raise ValueError(f"retention applies to final states only, not {state}")
        pruned: dict[str, int] = {}
        finished = {"states": [state.value for state in retention],
                    "cutoff": now - min(retention.values(), default=timedelta(0))}
        with self.transaction() as conn:
            for shard in self._locked_shards(conn, _LOCK_PRUNE, _SHARD_LOCK_PRUNE, shards,
                                             citus.SHARDS_WITH_FINISHED, finished):
                for state, keep in retention.items():
                    params = {"state": state.value, "cutoff": now - keep, "limit": limit, "shard": shard}
                    result = conn.execute(_PRUNE[shard is not None], params)
                    if result.rowcount:
                        pruned[state.value] = pruned.get(state.value, 0) + result.rowcount
        return pruned

    def _locked_shards(
        self, conn: Connection, key: int, shard_key: int, shards: Sequence[str] | None,
        with_work: sa.TextClause, params: Mapping[str, Any],
    ) -> Iterator[str | None]:
        """The shards this transaction won the maintenance lock of (None: every shard, under one lock).
        Another worker doing the same pass holds the lock: skip, it is being done. On Citus, every shard under
        the one lock is named (``with_work`` finds those with work): each statement is then a router query."""
        if shards is None:
            if conn.execute(_TRY_LOCK, {"key": key}).scalar():
                if not self.citus:
                    yield None
                    return
                yield from list(conn.execute(with_work, params).scalars())
            return
        for shard in shards:
            if conn.execute(_TRY_SHARD_LOCK, {"key": shard_key, "shard_key": _shard_lock_key(shard)}).scalar():
                yield shard
