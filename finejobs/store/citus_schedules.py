"""The schedule reads of finejobs.store.schedules in the form Citus takes (docs/citus.md).

On plain PostgreSQL a schedule row is read with its last job and whether a run is unfinished in one statement
(a join and a correlated EXISTS on finejobs_jobs). Citus cannot join the coordinator's finejobs_schedules to
the distributed job table that way ("correlated subqueries are not supported ..."), so here the schedules are
read alone, and their last jobs and unfinished runs in two more statements over the job table (each a
multi-shard read Citus runs on every shard at once), then merged: the same rows, the same filters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_SELECT = """
    SELECT s.*, CAST(NULL AS text) AS last_state, CAST(NULL AS text) AS last_result,
           CAST(NULL AS timestamptz) AS last_started_at, CAST(NULL AS timestamptz) AS last_finished_at,
           false AS unfinished
    FROM finejobs_schedules s
"""

# The same WHERE and ORDER BY as finejobs.store.schedules' _SCHEDULE_GET, _LIST, _DUE and _WAITING (whose
# condition on the last job is applied in rows(), below).
STATEMENTS = {
    "get": sa.text(_SELECT + " WHERE s.name = :name"),
    "list": sa.text(_SELECT + """ WHERE CAST(:pattern AS text) IS NULL OR s.name ILIKE :pattern
                                    OR s.description ILIKE :pattern OR s.kind ILIKE :pattern
                                  ORDER BY s.name"""),
    "due": sa.text(_SELECT + """ WHERE NOT s.paused AND s.next_fire_at <= :now
                                 ORDER BY s.next_fire_at LIMIT :limit"""),
    "waiting": sa.text(_SELECT + """ WHERE NOT s.paused AND s.next_fire_at IS NULL AND s.rule->>'type' = 'adaptive'
                                     ORDER BY s.id"""),
}

_LAST_JOBS = sa.text(
    "SELECT id, state, result, started_at, finished_at FROM finejobs_jobs WHERE id = ANY(CAST(:ids AS bigint[]))")

# The "unfinished" of finejobs.store.schedules' _SCHEDULE_SELECT (and its _SCHEDULE_BUSY).
_BUSY = sa.text(
    """
    SELECT schedule_id FROM finejobs_jobs
    WHERE schedule_id = ANY(CAST(:ids AS bigint[])) AND schedule_id IS NOT NULL
      AND state IN ('available', 'running') AND (state = 'running' OR expires_at IS NULL OR expires_at > :now)
    GROUP BY schedule_id
    """
)


def rows(conn: Connection, which: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows the plain statement ``which`` ("get", "list", "due", "waiting") gives, read as Citus can."""
    found = [dict(r) for r in conn.execute(STATEMENTS[which], dict(params)).mappings()]
    if not found:
        return found
    ids = [r["last_job_id"] for r in found if r["last_job_id"] is not None]
    last = {r["id"]: r for r in conn.execute(_LAST_JOBS, {"ids": ids}).mappings()} if ids else {}
    busy = set(conn.execute(_BUSY, {"ids": [r["id"] for r in found], "now": params["now"]}).scalars())
    for r in found:
        job = last.get(r["last_job_id"])
        if job is not None:
            r.update(last_state=job["state"], last_result=job["result"], last_started_at=job["started_at"],
                     last_finished_at=job["finished_at"])
        r["unfinished"] = r["id"] in busy
    if which == "waiting":  # (j.id IS NULL OR j.state NOT IN ('available', 'running'))
        found = [r for r in found if r["last_state"] not in ("available", "running")]
    return found
