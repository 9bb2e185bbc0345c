"""The SQL of the operations API: filtered keyset pages, bounded counts, bulk actions in batches, counts.

Every statement is bounded. A filter splits in two (see ``_where``): the conditions an index can seek on
(the stored state, the shard) choose the rows a statement *examines*, newest first, through the primary
key or the state index of migration 0006 (``(state, id, shard) INCLUDE (kind, run_at)``, every state but
running), and at most ``scan`` (or ``cap``) of them; the other conditions (kind, schedule, error text,
times) are checked on the examined rows only. A page whose examined rows ran out before it was full says
where to go on; a count that examined its cap says the real number may be higher; a bulk batch examines
at most ``scan`` rows and changes at most ``limit``, each batch its own short transaction.

The SQL text is made of fixed fragments. Values from a caller are bound parameters; stored states and row
limits are literals (states from a fixed set, limits validated integers), because the engine runs with
``plan_cache_mode=force_generic_plan``: a generic plan cannot use a partial index for ``state = $1`` and
guesses at ``LIMIT $1``, so a parameter there would turn a short index scan into a walk of the table once
psycopg prepares the statement. ``tests/integration/test_admin.py`` checks the plans, generic ones included.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from finejobs.filters import JobFilter
from finejobs.jobs import Job, JobState
from finejobs.store import citus
from finejobs.store.groups import GroupStore
from finejobs.store.tables import NOTIFY_CHANNEL

# The stored states, in the order stats counts them ("scheduled" is stored as "available").
STORED_STATES = ("available", "running", "succeeded", "failed", "expired", "cancelled")

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


@dataclass(frozen=True)
class BulkBatch:
    """One batch of a bulk action: ``matched`` jobs found among the examined rows, ``changed`` of them
    changed (the rest were locked by someone else at that moment, or, for a retry, their unique_key is held
    by an unfinished job); ``next_after`` is where the next batch starts (None: nothing left)."""

    matched: int
    changed: int
    next_after: int | None


@dataclass(frozen=True)
class Activity:
    """Jobs of one state that finished in one minute (``minute``: minutes since the start of the window),
    and the longest wait (start - due, seconds) among them."""

    minute: int
    jobs: int
    wait: float | None


@dataclass(frozen=True)
class _Where:
    """A filter as SQL: ``seek`` conditions choose the examined rows (an index seeks on them), ``check``
    conditions are tested on the examined rows, which then need ``columns``."""

    seek: list[str] = field(default_factory=list)
    check: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)


def _literal(state: str) -> str:
    """A stored state as an SQL literal (from the fixed set only: never a caller's string)."""
    if state not in STORED_STATES:
        raise ValueError(f"not a stored state: {state!r}")
    return f"'{state}'"


def _in(states: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(_literal(s) for s in states)})"


def _where(filt: JobFilter, now: datetime, schedule_id: int | None, *, shard_seek: bool = True) -> _Where:
    """The filter as SQL (``shard_seek=False``: the shard is checked on the examined rows, not sought)."""
    w = _Where(params={"now": now})

    def check(sql: str, *columns: str) -> None:
        w.check.append(sql)
        w.columns.extend(c for c in columns if c not in w.columns)

    state = filt.state
    if state is JobState.SCHEDULED or state is JobState.AVAILABLE:
        w.seek.append("state = 'available'")
        check("run_at > :now" if state is JobState.SCHEDULED else "run_at <= :now", "run_at")
    elif state is not None:
        w.seek.append(f"state = {_literal(state.value)}")
    if filt.shard is not None:
        if shard_seek:
            w.seek.append("shard = :shard")
        else:
            check("shard = :shard", "shard")
        w.params["shard"] = filt.shard
    if filt.kind is not None:
        check("kind = :kind", "kind")
        w.params["kind"] = filt.kind
    if filt.schedule is not None:
        check("schedule_id = :schedule_id", "schedule_id")
        w.params["schedule_id"] = -1 if schedule_id is None else schedule_id  # no such schedule: no job
    for name, sql, column in (("created_after", "created_at >= :created_after", "created_at"),
                              ("created_before", "created_at < :created_before", "created_at"),
                              ("finished_after", "finished_at >= :finished_after", "finished_at"),
                              ("finished_before", "finished_at < :finished_before", "finished_at")):
        if getattr(filt, name) is not None:
            check(sql, column)
            w.params[name] = getattr(filt, name)
    if filt.error is not None:
        # The last attempt's message (a row whose errors are not a list, written around finejobs, has none).
        check("(CASE WHEN jsonb_typeof(errors) = 'array' THEN errors -> -1 ->> 'message' END) ILIKE :error "
              "ESCAPE '\\'", "errors")
        w.params["error"] = "%" + filt.error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return w


def _and(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "true"


# The columns the state index holds (key or INCLUDE) besides the state: checks on these need no row.
_INDEXED = frozenset({"id", "shard", "kind", "run_at"})


def _examine(*, seek: list[str], columns: list[str], descending: bool, limit: int, on_citus: bool = False) -> str:
    """A SELECT of the examined rows' id, shard and ``columns``: at most ``limit`` rows of those ``seek``
    selects, in id order. When the seek names a state but a check needs a column the state index does
    not hold, the ids come from an index-only scan of the state index and each row is then read by its
    primary key (else the planner takes the primary key, in id order, and walks every other state's rows).
    On Citus, always the plain form (Citus cannot push down a LIMIT in a lateral subquery over a CTE)."""
    order = "id DESC" if descending else "id"
    wanted = [c for c in columns if c not in ("id", "shard")]
    by_state = any(c.startswith("state ") for c in seek)
    if on_citus or not by_state or set(wanted) <= _INDEXED:
        return (f"SELECT {', '.join(['id', 'shard', *wanted])} FROM finejobs_jobs WHERE {_and(seek)} "
                f"ORDER BY {order} LIMIT {_count(limit, 'limit')}")
    return (f"SELECT k.id, k.shard, {', '.join('r.' + c for c in wanted)} FROM (SELECT id, shard FROM finejobs_jobs "
            f"WHERE {_and(seek)} ORDER BY {order} LIMIT {_count(limit, 'limit')}) AS k "
            f"CROSS JOIN LATERAL (SELECT {', '.join(wanted)} FROM finejobs_jobs AS j "
            "WHERE j.id = k.id AND j.shard = k.shard LIMIT 1) AS r")


def _count(value: int, name: str) -> int:
    """A row limit, checked before it becomes a literal of the SQL text."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        raise ValueError(f"{name} must be an integer within 1..10000000, got {value!r}")
    return value


# The full rows of the hits, by primary key, one at a time (LIMIT 1 keeps the planner from joining the
# whole table instead).
_HIT_ROWS = ("CROSS JOIN LATERAL (SELECT * FROM finejobs_jobs AS j WHERE j.id = hits.id AND j.shard = hits.shard "
             "LIMIT 1) AS j")


def page_statement(filt: JobFilter, *, now: datetime, before: int | None, limit: int, scan: int,
                   schedule_id: int | None = None, on_citus: bool = False) -> tuple[sa.TextClause, dict[str, Any]]:
    """The statement of ``job_page`` and its parameters (also for the plan tests). On Citus it returns the
    hits' ids and shards only (job_page then reads their rows): Citus cannot join them laterally."""
    w = _where(filt, now, schedule_id)
    seek = list(w.seek)
    if before is not None:
        seek.append("id < :before")
        w.params["before"] = before
    examine = _examine(seek=seek, columns=w.columns, descending=True, limit=scan, on_citus=on_citus)
    stmt = sa.text(
        f"WITH examined AS MATERIALIZED ({examine}), "
        f"hits AS MATERIALIZED (SELECT id, shard FROM examined WHERE {_and(w.check)} "
        f"ORDER BY id DESC LIMIT {_count(limit, 'limit') + 1}) "
        f"SELECT e.examined_low, e.examined_n, {'hits.id, hits.shard' if on_citus else 'j.*'} "
        "FROM (SELECT min(id) AS examined_low, count(*) AS examined_n FROM examined) AS e "
        + ("LEFT JOIN hits ON true ORDER BY hits.id DESC" if on_citus
           else f"LEFT JOIN (hits {_HIT_ROWS}) ON true ORDER BY j.id DESC"))
    return stmt, w.params


def count_statement(filt: JobFilter, *, now: datetime, cap: int, schedule_id: int | None = None,
                    states: tuple[str, ...] | None = None, shard_seek: bool = True, on_citus: bool = False,
                    ) -> tuple[sa.TextClause, dict[str, Any]]:
    """The statement of ``job_count`` (``states``: only jobs in these stored states; ``shard_seek``: the
    shard has a partition of its own, so seeking it prunes the others)."""
    w = _where(filt, now, schedule_id, shard_seek=shard_seek)
    check, columns = list(w.check), list(w.columns)
    if states is not None and filt.state is None:
        if len(states) == 1:
            w.seek.append(f"state = {_literal(states[0])}")
        else:
            check.append(_in(states))
            columns.append("state")
    stmt = sa.text(
        f"SELECT count(*) FILTER (WHERE {_and(check)}) AS n, count(*) AS examined FROM ("
        f"{_examine(seek=w.seek, columns=columns, descending=True, limit=cap, on_citus=on_citus)}) AS examined")
    return stmt, w.params


def bulk_pick_statement(action: str, filt: JobFilter, *, now: datetime, after: int, limit: int, scan: int,
                        schedule_id: int | None = None, on_citus: bool = False) -> tuple[sa.TextClause, dict[str, Any]]:
    """The first statement of a bulk batch: examine at most ``scan`` rows above ``after`` (oldest first),
    lock (SKIP LOCKED) at most ``limit`` of those that match and may take the action. On Citus the hits are
    not locked here (Citus refuses FOR UPDATE across shards): the change, one shard at a time, locks them."""
    w = _where(filt, now, schedule_id)
    states = ACTION_STATES[action]
    check, columns = list(w.check), list(w.columns)
    if filt.state is None:
        check.append(_in(states))
        columns.append("state")
    w.params["after"] = after
    examine = _examine(seek=[*w.seek, "id > :after"], columns=columns, descending=False, limit=scan,
                       on_citus=on_citus)
    stmt = sa.text(
        f"WITH examined AS MATERIALIZED ({examine}), "
        f"hits AS MATERIALIZED (SELECT id, shard FROM examined WHERE {_and(check)} "
        f"ORDER BY id LIMIT {_count(limit, 'limit')}), "
        + ("locked AS (SELECT id, shard FROM hits) " if on_citus else
           "locked AS (SELECT l.id, l.shard FROM hits CROSS JOIN LATERAL (SELECT j.id, j.shard FROM finejobs_jobs AS j "
           f"WHERE j.id = hits.id AND j.shard = hits.shard AND j.{_in(states)} LIMIT 1 FOR UPDATE SKIP LOCKED) AS l) ")
        + "SELECT (SELECT max(id) FROM examined) AS examined_high, (SELECT count(*) FROM hits) AS matched, "
        "(SELECT max(id) FROM hits) AS hits_high, locked.id, locked.shard "
        "FROM (SELECT 1) AS one LEFT JOIN locked ON true ORDER BY locked.id")
    return stmt, w.params


@functools.lru_cache(maxsize=64)
def state_counts_statement(state: str, cap: int) -> sa.TextClause:
    """(state, kind, shard, n) of the newest ``cap`` jobs in one stored state: an index-only scan of the
    state index (running jobs, few, through the lease index)."""
    label = "CASE WHEN run_at > :now THEN 'scheduled' ELSE 'available' END" if state == "available" \
        else _literal(state)
    return sa.text(
        f"SELECT {label} AS state, kind, shard, count(*) AS n FROM (SELECT kind, shard, run_at FROM finejobs_jobs "
        f"WHERE state = {_literal(state)} ORDER BY id DESC LIMIT {_count(cap, 'cap')}) AS newest "
        "GROUP BY 1, 2, 3")


# Per shard, the oldest run_at among due waiting jobs: a skip scan over the claim index (shard, priority
# DESC, run_at, id), one probe per (shard, priority) that has waiting jobs. The first entry of each such
# group is its oldest run_at, so a group whose first entry is not yet due has no due job at all.
LAG_STATEMENT = sa.text(
    """
    WITH RECURSIVE g(shard, priority, run_at) AS (
        (SELECT shard, priority, run_at FROM finejobs_jobs WHERE state = 'available'
         ORDER BY shard, priority DESC, run_at, id LIMIT 1)
        UNION ALL
        SELECT n.shard, n.priority, n.run_at FROM g CROSS JOIN LATERAL (
            SELECT c.shard, c.priority, c.run_at FROM (
                (SELECT shard, priority, run_at FROM finejobs_jobs
                 WHERE state = 'available' AND shard = g.shard AND priority < g.priority
                 ORDER BY priority DESC, run_at, id LIMIT 1)
                UNION ALL
                (SELECT shard, priority, run_at FROM finejobs_jobs WHERE state = 'available' AND shard > g.shard
                 ORDER BY shard, priority DESC, run_at, id LIMIT 1)
            ) AS c LIMIT 1
        ) AS n
    )
    SELECT shard, min(run_at) AS oldest FROM g WHERE run_at <= :now GROUP BY shard
    """
)
# Citus refuses the recursive skip scan across shards; grouped by the distribution column, this runs on every
# Citus shard at once (each reads its claim index's due entries).
LAG_STATEMENT_CITUS = sa.text(
    "SELECT shard, min(run_at) AS oldest FROM finejobs_jobs WHERE state = 'available' AND run_at <= :now "
    "GROUP BY shard")


@functools.lru_cache(maxsize=8)
def expiring_statement(cap: int) -> sa.TextClause:
    """Per shard, waiting jobs whose expires_at falls in [now, until): a range of the expiry index."""
    return sa.text(
        "SELECT shard, count(*) AS n FROM (SELECT shard FROM finejobs_jobs WHERE state = 'available' "
        "AND expires_at >= :now AND expires_at < :until ORDER BY expires_at "
        f"LIMIT {_count(cap, 'cap')}) AS soon GROUP BY shard")


def activity_statement(state: str, cap: int) -> sa.TextClause:
    """Per minute since ``:since`` (0 = the first), the jobs of one finished state that finished then, and
    the longest wait (start - due, seconds) among them: a range of the finished index of migration 0004
    ``(state, finished_at)``, the newest ``cap`` rows at most."""
    return sa.text(
        "SELECT floor(extract(epoch FROM f.finished_at - :since) / 60)::int AS minute, count(*) AS n, "
        "max(greatest(0, extract(epoch FROM f.started_at - f.run_at)))::float8 AS wait FROM ("
        f"SELECT finished_at, started_at, run_at FROM finejobs_jobs WHERE state = {_literal(state)} "
        f"AND finished_at >= :since AND finished_at < :now ORDER BY finished_at DESC LIMIT {_count(cap, 'cap')}"
        ") AS f GROUP BY 1")


_OWN_PARTITION = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = CAST('finejobs_jobs' AS regclass) "
    "AND pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES IN (%L)', CAST(:shard AS text)))")

_BY_IDS = "j.id = ANY(CAST(:ids AS bigint[])) AND j.shard = ANY(CAST(:shards AS text[]))"
_CHANGE = {
    # As JobRowsStore.job_retry, leaving alone a job whose unique_key an unfinished job holds.
    # Each returns the rows' group and their state before and after (for the group counters): in the UPDATEs,
    # o is the row as this transaction locked it (the bulk pick took FOR UPDATE), before the change.
    "retry": sa.text(
        "UPDATE finejobs_jobs AS j SET state = 'available', run_at = :now, finished_at = NULL, "
        "max_attempts = GREATEST(j.max_attempts, j.attempt + 1), "
        "expires_at = CASE WHEN j.expires_at IS NOT NULL AND j.expires_at <= :now THEN NULL ELSE j.expires_at END "
        f"FROM finejobs_jobs AS o WHERE o.id = j.id AND o.shard = j.shard "
        f"AND {_BY_IDS} AND j.{_in(ACTION_STATES['retry'])} AND (j.unique_key IS NULL OR NOT EXISTS ("
        "SELECT 1 FROM finejobs_jobs AS h WHERE h.shard = j.shard AND h.unique_key = j.unique_key "
        "AND h.state IN ('available', 'running'))) "
        "RETURNING j.shard, j.run_at, j.group_id, o.state AS old_state, j.state AS new_state"),
    # As JobRowsStore.job_cancel: a running handler's late outcome is then ignored.
    "cancel": sa.text(
        "UPDATE finejobs_jobs AS j SET state = 'cancelled', finished_at = :now, lease_owner = NULL, "
        "lease_expires_at = NULL, errors = j.errors || "
        + citus.error_entry(attempt="j.attempt", error="'Cancelled'", message="CAST(:reason AS text)", worker="NULL")
        + " FROM finejobs_jobs AS o WHERE o.id = j.id AND o.shard = j.shard "
        f"AND {_BY_IDS} AND j.{_in(ACTION_STATES['cancel'])} "
        "RETURNING j.shard, j.run_at, j.group_id, o.state AS old_state, j.state AS new_state"),
    "delete": sa.text(
        f"DELETE FROM finejobs_jobs AS j WHERE {_BY_IDS} AND j.{_in(ACTION_STATES['delete'])} "
        "RETURNING j.shard, j.run_at, j.group_id, j.state AS old_state, NULL AS new_state"),
}
_ROWS_BY_IDS = sa.text(
    "SELECT * FROM finejobs_jobs WHERE id = ANY(CAST(:ids AS bigint[])) AND shard = ANY(CAST(:shards AS text[]))")
_NOTIFY = sa.text("SELECT count(pg_notify(:channel, s)) FROM unnest(CAST(:shards AS text[])) AS s")


class OperationsStore(GroupStore):
    """Reads and bulk actions for operators (finejobs.admin calls these)."""

    def schedule_id_of(self, *, name: str) -> int | None:
        with self.transaction(autocommit=True) as conn:
            value = conn.execute(sa.text("SELECT id FROM finejobs_schedules WHERE name = :name"),
                                 {"name": name}).scalar()
        return None if value is None else int(value)

    def job_page(self, *, filt: JobFilter, now: datetime, before: int | None, limit: int, scan: int,
                 schedule_id: int | None = None) -> PageRows:
        """Up to ``limit`` matching jobs with ids below ``before``, newest first, examining at most ``scan``
        rows: when those ran out first, ``next_before`` says where the next page goes on."""
        on_citus = self.citus
        stmt, params = page_statement(filt, now=now, before=before, limit=limit, scan=scan, schedule_id=schedule_id,
                                      on_citus=on_citus)
        with self.transaction(autocommit=True) as conn:
            rows: list[Mapping[Any, Any]] = list(conn.execute(stmt, params).mappings())
            if on_citus:  # the hits' rows, by id (and shard: each Citus shard holding one is asked)
                hits = [r for r in rows if r["id"] is not None]
                full = {r["id"]: r for r in conn.execute(_ROWS_BY_IDS, {
                    "ids": [r["id"] for r in hits], "shards": sorted({r["shard"] for r in hits})}).mappings()}
                rows = [{**rows[0], **full[r["id"]]} for r in hits if r["id"] in full] or rows[:1]
        low, examined = rows[0]["examined_low"], int(rows[0]["examined_n"])
        jobs = [Job.from_row(r, now=now) for r in rows if r["id"] is not None]
        if len(jobs) > limit:
            return PageRows(jobs[:limit], jobs[limit - 1].id, examined)
        if examined >= scan and low is not None:
            return PageRows(jobs, int(low), examined)  # the examined rows ran out, maybe not the matches
        return PageRows(jobs, None, examined)

    def job_count(self, *, filt: JobFilter, now: datetime, cap: int, schedule_id: int | None = None,
                  states: tuple[str, ...] | None = None) -> tuple[int, bool]:
        """How many jobs match among the newest ``cap`` that the filter's state (and the shard, if it has a
        partition of its own) select: the bool says that many were examined, so the count may be higher.
        A shard in the default partition is checked on the examined rows, not sought: seeking it would walk
        the other shards' rows there, an unbounded number. ``states``: only jobs in these stored states."""
        with self.transaction(autocommit=True) as conn:
            own = filt.shard is not None and bool(conn.execute(_OWN_PARTITION, {"shard": filt.shard}).scalar())
            stmt, params = count_statement(filt, now=now, cap=cap, schedule_id=schedule_id, states=states,
                                           shard_seek=own, on_citus=self.citus)
            row = conn.execute(stmt, params).one()
        return int(row.n), int(row.examined) >= cap

    def job_bulk(self, *, action: str, filt: JobFilter, now: datetime, after: int, limit: int, scan: int,
                 reason: str = "", schedule_id: int | None = None) -> BulkBatch:
        """One batch of a bulk action, in one short transaction: among at most ``scan`` rows with ids above
        ``after``, at most ``limit`` matching jobs are locked (SKIP LOCKED: one a worker holds at that moment
        is left alone) and changed. A retry leaves alone a job whose unique_key an unfinished job holds."""
        stmt, params = bulk_pick_statement(action, filt, now=now, after=after, limit=limit, scan=scan,
                                           schedule_id=schedule_id, on_citus=self.citus)
        change = _CHANGE[action]
        with self.transaction() as conn:
            rows = list(conn.execute(stmt, params).mappings())
            head = rows[0]
            if head["examined_high"] is None:
                return BulkBatch(0, 0, None)
            matched = int(head["matched"])
            next_after = int(head["hits_high"]) if matched >= limit else int(head["examined_high"])
            picked = [(int(r["id"]), str(r["shard"])) for r in rows if r["id"] is not None]
            values = {"now": now, "now_iso": now.isoformat(), "reason": reason}
            try:
                with conn.begin_nested():
                    done = self._change(conn, change, picked, values)
            except sa.exc.IntegrityError:  # two jobs of this batch share a unique_key: one at a time
                done = []
                for one in picked:
                    try:
                        with conn.begin_nested():
                            done += self._change(conn, change, [one], values)
                    except sa.exc.IntegrityError:
                        continue
            due = sorted({shard for shard, run_at in done if run_at <= now})
            if action == "retry" and due:
                conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "shards": due})
            return BulkBatch(matched, len(done), next_after)

    def _change(self, conn: sa.Connection, change: sa.TextClause, picked: list[tuple[int, str]],
                values: dict[str, Any]) -> list[tuple[str, datetime]]:
        if not picked:
            return []
        if self.citus and len({s for _, s in picked}) > 1:  # one router statement a shard
            by_shard: dict[str, list[tuple[int, str]]] = {}
            for one in picked:
                by_shard.setdefault(one[1], []).append(one)
            return [row for part in by_shard.values() for row in self._change(conn, change, part, values)]
        params = {**values, "ids": [i for i, _ in picked], "shards": sorted({s for _, s in picked})}
        rows = conn.execute(change, params).all()
        self.apply_group_changes(conn, [(r.group_id, r.old_state, r.new_state) for r in rows], now=values["now"])
        return [(str(r.shard), r.run_at) for r in rows]

    def job_delete(self, *, job_id: int, now: datetime) -> Job | None:
        """Delete one job that is not running; returns it as it was (None: no such job, or it is running)."""
        stmt = sa.text("DELETE FROM finejobs_jobs WHERE id = :id AND state <> 'running' RETURNING *")
        with self.transaction() as conn:
            row = conn.execute(stmt, {"id": job_id}).mappings().first()
            if row is not None:
                self.apply_group_changes(conn, [(row["group_id"], row["state"], None)], now=now)
        return None if row is None else Job.from_row(row, now=now)

    def job_counts(self, *, now: datetime, cap: int) -> tuple[list[tuple[str, str, str, int]], bool]:
        """(state, kind, shard, count) rows: in each stored state the newest ``cap`` jobs at most, each
        through an index-only scan (the bool: some state has more)."""
        rows: list[tuple[str, str, str, int]] = []
        capped = False
        with self.transaction(autocommit=True) as conn:
            for stored in STORED_STATES:
                found = [(str(r.state), str(r.kind), str(r.shard), int(r.n))
                         for r in conn.execute(state_counts_statement(stored, cap + 1), {"now": now})]
                total = sum(n for *_, n in found)
                if total > cap:
                    capped = True
                    _trim(found, total - cap)
                rows += found
        return rows, capped

    def job_lag(self, *, now: datetime) -> dict[str, float]:
        """Per shard with due waiting jobs, the age in seconds of the oldest (a shard with none is left out)."""
        with self.transaction(autocommit=True) as conn:
            return {str(r.shard): max(0.0, (now - r.oldest).total_seconds())
                    for r in conn.execute(LAG_STATEMENT_CITUS if self.citus else LAG_STATEMENT, {"now": now})}

    def job_expiring(self, *, now: datetime, until: datetime, cap: int = 100_000) -> dict[str, int]:
        """Per shard, waiting jobs whose expires_at falls in [now, until) (at most ``cap`` in all)."""
        with self.transaction(autocommit=True) as conn:
            return {str(r.shard): int(r.n)
                    for r in conn.execute(expiring_statement(cap), {"now": now, "until": until})}


    def job_activity(self, *, now: datetime, since: datetime, cap: int,
                     states: tuple[str, ...] = ("succeeded", "failed")) -> tuple[dict[str, list[Activity]], bool]:
        """Per finished state, per minute since ``since``: the jobs that finished then and their longest
        wait; at most the newest ``cap`` of each state (the bool: some state had more)."""
        found: dict[str, list[Activity]] = {}
        capped = False
        with self.transaction(autocommit=True) as conn:
            for state in states:
                rows = [Activity(int(r.minute), int(r.n), None if r.wait is None else float(r.wait))
                        for r in conn.execute(activity_statement(state, cap), {"now": now, "since": since})]
                capped = capped or sum(a.jobs for a in rows) >= cap
                found[state] = rows
        return found, capped

def _trim(found: list[tuple[str, str, str, int]], extra: int) -> None:
    """Take the one row counted past the cap off the largest group (so a capped state shows the cap)."""
    if not found or extra <= 0:
        return
    i = max(range(len(found)), key=lambda k: found[k][3])
    state, kind, shard, n = found[i]
    found[i] = (state, kind, shard, n - extra)
