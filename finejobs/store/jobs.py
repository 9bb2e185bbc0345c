"""Job rows outside the hot path: enqueue (one statement for any number of jobs), reads, the single-job
operations (cancel, retry, run now) and the counts of finejobs.Stats.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from finejobs.errors import (
    FinejobsError,
    JobNotFound,
)
from finejobs.jobs import Job, JobState, NewJob
from finejobs.store import citus
from finejobs.store._base import UserConnection, _run
from finejobs.store.groups import GroupStore
from finejobs.store.tables import NOTIFY_CHANNEL, jobs_table


@dataclass(frozen=True)
class Stats:
    """Job counts by state, kind and shard (``scheduled`` told apart from ``available``)."""

    by_state: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    by_shard: dict[str, dict[str, int]]
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "by_state": self.by_state, "by_kind": self.by_kind,
                "by_shard": self.by_shard}

    @classmethod
    def combine(cls, parts: Sequence[Stats]) -> Stats:
        """The sum of several databases' counts."""
        if len(parts) == 1:
            return parts[0]
        by_state: dict[str, int] = {s.value: 0 for s in JobState}
        by_kind: dict[str, dict[str, int]] = {}
        by_shard: dict[str, dict[str, int]] = {}
        for part in parts:
            for state, n in part.by_state.items():
                by_state[state] = by_state.get(state, 0) + n
            for mine, theirs in ((by_kind, part.by_kind), (by_shard, part.by_shard)):
                for name, counts in theirs.items():
                    group = mine.setdefault(name, {})
                    for state, n in counts.items():
                        group[state] = group.get(state, 0) + n
        return cls(by_state=by_state, by_kind=by_kind, by_shard=by_shard, total=sum(p.total for p in parts))


_ON_CONFLICT = """ON CONFLICT (shard, unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'running')
        DO NOTHING"""


def _insert_tail(*, grouped: bool, keyed: bool, one_row: bool = False) -> str:
    """What both insert statements end with: the conflict rule, the rows returned, one NOTIFY per shard that got
    a due job (an uncorrelated subquery runs once; for one row, a NOTIFY beside it: 0.1-0.2 ms less between an
    enqueue and its start on an idle server, measured by hand)."""
    group = "group_id" if grouped else "CAST(NULL AS bigint) AS group_id"
    notify = "CASE WHEN run_at <= :now THEN pg_notify(:channel, shard) END" if one_row else """(
            SELECT count(pg_notify(:channel, d.shard))
            FROM (SELECT DISTINCT shard FROM ins WHERE run_at <= :now) AS d)"""
    return f"""{_ON_CONFLICT if keyed else ""}
        RETURNING id, unique_key, shard, run_at, {group}
    )
    SELECT id, unique_key, shard, group_id, {notify} AS notified
    FROM ins"""


@functools.cache
def _insert_sql(*, traced: bool, grouped: bool = False, keyed: bool = True) -> sa.TextClause:
    # One JSON array in, one row per element: much cheaper to bind than eight typed arrays. The same
    # statement sends one NOTIFY per shard that got a due job (an uncorrelated subquery runs once). With
    # tracing on (finejobs.tracing), each row also carries its trace context, and members of a group their
    # group id; without, the statement reads no such column, so that enqueueing costs what it did before.
    # A batch without unique keys needs no ON CONFLICT (its arbiter index is partial, on unique_key IS NOT
    # NULL): a speculative insertion costs about a tenth of a single-row enqueue.
    extra = [name for name, on in (("trace", traced), ("group_id", grouped)) if on]
    types = {"trace": "trace jsonb", "group_id": "group_id bigint"}
    cols = "".join(f", {name}" for name in extra)
    u_cols = "".join(f", u.{name}" for name in extra)
    col_types = "".join(f", {types[name]}" for name in extra)
    return sa.text(f"""
    WITH ins AS (
        INSERT INTO finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts,
                                   unique_key, created_at{cols})
        SELECT u.kind, u.shard, u.payload, u.priority, u.run_at, u.expires_at, u.max_attempts,
               u.unique_key, :now{u_cols}
        FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb))
                        AS (kind text, shard text, payload jsonb, priority smallint, run_at timestamptz,
                            expires_at timestamptz, max_attempts integer, unique_key text{col_types}))
             WITH ORDINALITY AS u(kind, shard, payload, priority, run_at, expires_at, max_attempts, unique_key{cols},
                                  ord)
        ORDER BY u.ord
        {_insert_tail(grouped=grouped, keyed=keyed)}
    """)


@functools.cache
def _insert_one_sql(*, traced: bool, grouped: bool = False, keyed: bool = True,
                    citus: bool = False) -> sa.TextClause:
    # One job as INSERT ... VALUES. On Citus (docs/citus.md) a fast-path router insert: the INSERT ... SELECT of
    # _insert_sql takes Citus's INSERT ... SELECT path through the coordinator, about 7 ms a job against 2.7 ms
    # (measured by hand on the test cluster, NOTIFY included); there it keeps the NOTIFY subquery it was tested
    # with. Elsewhere, its NOTIFY beside the row. Same columns, conflict rule and result as _insert_sql.
    extra = [name for name, on in (("trace", traced), ("group_id", grouped)) if on]
    values = {"trace": "CAST(:trace AS jsonb)", "group_id": "CAST(:group_id AS bigint)"}
    return sa.text(f"""
    WITH ins AS (
        INSERT INTO finejobs_jobs (kind, shard, payload, priority, run_at, expires_at, max_attempts,
                                   unique_key, created_at{"".join(f", {name}" for name in extra)})
        VALUES (:kind, :shard, CAST(:payload AS jsonb), :priority, :run_at, :expires_at, :max_attempts,
                :unique_key, :now{"".join(f", {values[name]}" for name in extra)})
        {_insert_tail(grouped=grouped, keyed=keyed, one_row=not citus)}
    """)


def _one_params(job: NewJob) -> dict[str, Any]:
    return {"kind": job.kind, "shard": job.shard, "payload": job.payload_json, "priority": job.priority,
            "run_at": job.run_at, "expires_at": job.expires_at, "max_attempts": job.max_attempts,
            "unique_key": job.unique_key, "trace": None if job.trace is None else json.dumps(job.trace),
            "group_id": job.group_id}


_SELECT_UNFINISHED_BY_KEYS = sa.text(
    """
    SELECT j.* FROM finejobs_jobs j
    JOIN unnest(CAST(:shards AS text[]), CAST(:keys AS text[])) AS k(shard, unique_key)
      ON j.shard = k.shard AND j.unique_key = k.unique_key
    WHERE j.state IN ('available', 'running')
    """
)


_STATS = sa.text(
    """
    SELECT CASE WHEN state = 'available' AND run_at > :now THEN 'scheduled' ELSE state END AS state,
           kind, shard, count(*) AS n
    FROM finejobs_jobs GROUP BY 1, 2, 3
    """
)


_CANCEL = sa.text(
    f"""
    UPDATE finejobs_jobs
    SET state = 'cancelled', finished_at = :now, lease_owner = NULL, lease_expires_at = NULL,
        errors = errors || {citus.error_entry(attempt="attempt", error="'Cancelled'",
                                              message="CAST(:reason AS text)", worker="NULL")}
    WHERE id = :id AND state IN ('available', 'running')
    RETURNING *
    """
)


_RETRY = sa.text(
    # old_state: the final state the retry takes the job out of (its group's counters move back).
    """
    WITH old AS (
        SELECT id, shard, state FROM finejobs_jobs
        WHERE id = :id AND state IN ('failed', 'expired', 'cancelled') FOR UPDATE
    )
    UPDATE finejobs_jobs AS j
    SET state = 'available', run_at = :now, finished_at = NULL,
        max_attempts = GREATEST(j.max_attempts, j.attempt + 1),
        expires_at = CASE WHEN j.expires_at IS NOT NULL AND j.expires_at <= :now THEN NULL ELSE j.expires_at END
    FROM old
    WHERE j.id = old.id AND j.shard = old.shard
    RETURNING j.*, old.state AS old_state
    """
)


_RUN_NOW = sa.text(
    "UPDATE finejobs_jobs SET run_at = :now WHERE id = :id AND state = 'available' RETURNING *"
)


@functools.lru_cache(maxsize=1024)
def _quoted(text: str) -> str:
    return json.dumps(text)  # kinds and shards repeat, within a batch and across enqueues


def _rows_json(jobs: Sequence[NewJob]) -> str:
    """The jobs as one JSON array; payloads are spliced in as the JSON text they already are."""
    dumps, quoted = json.dumps, _quoted
    iso = functools.lru_cache(maxsize=64)(datetime.isoformat) if len(jobs) > 8 else datetime.isoformat  # run_at
    parts = [
        f'{{"kind":{quoted(j.kind)},"shard":{quoted(j.shard)},"payload":{j.payload_json},'
        f'"priority":{j.priority},"run_at":"{iso(j.run_at)}",'
        f'"expires_at":{dumps(j.expires_at.isoformat()) if j.expires_at else "null"},'
        f'"max_attempts":{j.max_attempts},"unique_key":{"null" if j.unique_key is None else dumps(j.unique_key)}'
        f'{_trace_json(j.trace)}{_group_json(j.group_id)}}}'
        for j in jobs
    ]
    return "[" + ",".join(parts) + "]"


def _trace_json(trace: dict[str, str] | None) -> str:
    return "" if trace is None else f',"trace":{json.dumps(trace)}'


def _group_json(group_id: int | None) -> str:
    return "" if group_id is None else f',"group_id":{int(group_id)}'


def _new_job(job_id: int, job: NewJob, now: datetime) -> Job:
    """The Job just inserted, built from what we sent (saves reading every row back)."""
    return Job(
        id=job_id, kind=job.kind, shard=job.shard, payload=job.payload,
        state=JobState.SCHEDULED if job.run_at > now else JobState.AVAILABLE,
        priority=job.priority, run_at=job.run_at, expires_at=job.expires_at, attempt=0,
        max_attempts=job.max_attempts, unique_key=job.unique_key, lease_owner=None, lease_expires_at=None,
        errors=(), created_at=now, started_at=None, finished_at=None, trace=job.trace, group_id=job.group_id,
    )


class JobRowsStore(GroupStore):
    """Enqueue, reads and single-job operations."""

    def job_insert_many(
        self, jobs: Sequence[NewJob], *, now: datetime, conn: UserConnection | None = None
    ) -> list[Job]:
        """Insert jobs in one statement; returns one Job per input, in order.

        An input whose unique_key is held by an unfinished job (already stored, or earlier in the
        same batch) gets that job back and writes nothing.
        """
        if not jobs:
            return []
        grouped = any(j.group_id is not None for j in jobs)
        if conn is None and not grouped:
            # Each statement is atomic on its own: in autocommit on the driver (the fast path, see _fast).
            return self._insert_rows(self._fast, jobs, now, {})
        if conn is None:
            # Members of a group are counted into it in the same transaction (so a sealed group refuses them all).
            with self.transaction() as own:
                return self._insert(own, jobs, now)
        return self._insert(conn, jobs, now)

    def _insert(self, conn: UserConnection, jobs: Sequence[NewJob], now: datetime) -> list[Job]:
        """Insert on ``conn``; new members of groups are counted into their groups on it too."""
        joined: dict[int, int] = {}
        made = self._insert_rows(functools.partial(_run, conn), jobs, now, joined)
        for group_id, count in sorted(joined.items()):
            self.group_join(conn, group_id=group_id, count=count)
        return made

    def _insert_rows(self, run: Callable[[sa.TextClause, Mapping[str, Any]], Sequence[Mapping[str, Any]]],
                     jobs: Sequence[NewJob], now: datetime, joined: dict[int, int]) -> list[Job]:
        pending = list(range(len(jobs)))
        result: list[Job | None] = [None] * len(jobs)
        for _ in range(5):  # a holder of a key can finish between insert and select: try again
            batch = [jobs[i] for i in pending]
            forms = {"traced": any(j.trace is not None for j in batch),
                     "grouped": any(j.group_id is not None for j in batch),
                     "keyed": any(j.unique_key is not None for j in batch)}
            if len(batch) == 1:
                inserted = run(_insert_one_sql(**forms, citus=self.citus),
                               {"now": now, "channel": NOTIFY_CHANNEL, **_one_params(batch[0])})
            else:
                inserted = run(_insert_sql(**forms), {"now": now, "rows": _rows_json(batch),
                                                      "channel": NOTIFY_CHANNEL})
            for new in inserted:
                if new["group_id"] is not None:
                    joined[new["group_id"]] = joined.get(new["group_id"], 0) + 1
            # A unique_key is unique within its shard.
            new_ids: dict[tuple[str, str], int] = {}
            keyless = iter(sorted(r["id"] for r in inserted if r["unique_key"] is None))
            for new in inserted:
                if new["unique_key"] is not None:
                    new_ids[(new["shard"], new["unique_key"])] = new["id"]
            held: dict[tuple[str, str], Job] = {}
            missing = sorted({(j.shard, j.unique_key) for j in batch
                              if j.unique_key and (j.shard, j.unique_key) not in new_ids})
            if missing:
                params = {"shards": [m[0] for m in missing], "keys": [m[1] for m in missing]}
                for row in run(_SELECT_UNFINISHED_BY_KEYS, params):
                    held[(row["shard"], row["unique_key"])] = Job.from_row(row, now=now)
            still: list[int] = []
            made: dict[int, Job] = {}
            for i in pending:
                job = jobs[i]
                key = None if job.unique_key is None else (job.shard, job.unique_key)
                new_id = next(keyless) if key is None else new_ids.get(key)
                if new_id is not None:
                    result[i] = made.get(new_id) or made.setdefault(new_id, _new_job(new_id, job, now))
                elif key in held:
                    result[i] = held[key]
                else:
                    still.append(i)
            pending = still
            if not pending:
                return [job for job in result if job is not None]
        raise FinejobsError("could not insert jobs: unique_key holders kept changing")  # pragma: no cover

    def job_get(self, *, job_id: int, now: datetime) -> Job:
        with self.transaction(autocommit=True) as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        return Job.from_row(row, now=now)

    def job_exists(self, *, job_id: int) -> bool:
        with self.transaction(autocommit=True) as conn:
            return conn.execute(sa.select(jobs_table.c.id).where(jobs_table.c.id == job_id)).first() is not None

    def job_list(
        self,
        *,
        now: datetime,
        state: JobState | None = None,
        kind: str | None = None,
        shard: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """The newest jobs first, filtered."""
        query = sa.select(jobs_table).order_by(jobs_table.c.id.desc()).limit(limit)
        if state is JobState.SCHEDULED:
            query = query.where(jobs_table.c.state == "available", jobs_table.c.run_at > now)
        elif state is JobState.AVAILABLE:
            query = query.where(jobs_table.c.state == "available", jobs_table.c.run_at <= now)
        elif state is not None:
            query = query.where(jobs_table.c.state == state.value)
        if kind is not None:
            query = query.where(jobs_table.c.kind == kind)
        if shard is not None:
            query = query.where(jobs_table.c.shard == shard)
        with self.transaction(autocommit=True) as conn:
            return [Job.from_row(r, now=now) for r in conn.execute(query).mappings()]

    def job_cancel(self, *, job_id: int, now: datetime, reason: str = "cancelled by operator") -> Job:
        """Cancel a waiting or running job (a running handler's late outcome is then ignored)."""
        return self._operate(_CANCEL, job_id=job_id, now=now, reason=reason, verb="cancel")

    def job_retry(self, *, job_id: int, now: datetime) -> Job:
        """Run a failed, expired or cancelled job again now, allowing one more attempt."""
        try:
            return self._operate(_RETRY, job_id=job_id, now=now, verb="retry")
        except sa.exc.IntegrityError as exc:
            raise FinejobsError(
                f"cannot retry job {job_id}: another unfinished job holds its unique_key"
            ) from exc

    def job_run_now(self, *, job_id: int, now: datetime) -> Job:
        """Make a waiting job due now."""
        return self._operate(_RUN_NOW, job_id=job_id, now=now, verb="run now")

    def _operate(self, stmt: sa.TextClause, *, job_id: int, now: datetime, verb: str, **extra: Any) -> Job:
        params = {"id": job_id, "now": now, "now_iso": now.isoformat(), **extra}
        with self.transaction() as conn:  # the job's group, if any, is counted in the same transaction
            row = conn.execute(stmt, params).mappings().first()
            if row is not None and row["group_id"] is not None:
                old = row.get("old_state", "available")  # cancel and run-now start from an unfinished state
                self.apply_group_changes(conn, [(row["group_id"], old, row["state"])], now=now)
        if row is None:
            current = self.job_get(job_id=job_id, now=now)  # raises JobNotFound
            raise FinejobsError(f"cannot {verb} job {job_id}: it is {current.state.value}")
        return Job.from_row(row, now=now)

    def job_stats(self, *, now: datetime) -> Stats:
        by_state: dict[str, int] = {s.value: 0 for s in JobState}
        by_kind: dict[str, dict[str, int]] = {}
        by_shard: dict[str, dict[str, int]] = {}
        total = 0
        with self.transaction(autocommit=True) as conn:
            for row in conn.execute(_STATS, {"now": now}):
                by_state[row.state] += row.n
                by_kind.setdefault(row.kind, {}).setdefault(row.state, 0)
                by_kind[row.kind][row.state] += row.n
                by_shard.setdefault(row.shard, {}).setdefault(row.state, 0)
                by_shard[row.shard][row.state] += row.n
                total += row.n
        return Stats(by_state=by_state, by_kind=by_kind, by_shard=by_shard, total=total)
