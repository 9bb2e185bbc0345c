"""The job table LIST-partitioned by shard (migration 0004), on a real PostgreSQL.

Every test that adds or drops partitions works in a database of its own (``empty_database_url``, migrated
here): the session database is only truncated between tests and must never keep extra partitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

import finejobs
from finejobs import FinejobsError, Job, JobKind, JobState, Queue
from finejobs.outcomes import succeeded
from finejobs.sharding import partition_name
from finejobs.store import DEFAULT_PARTITION, libpq_url
from finejobs.store._base import _compiled_for_psycopg
from finejobs.store.hot import _CLAIM, _COMPLETE_IN_SHARD, _EXPIRE_OVERDUE, _PRUNE, _RESCUE_EXPIRED_LEASES
from finejobs.testing import FakeClock

SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
LEASE = timedelta(seconds=30)

DB = psycopg.Connection[dict[str, Any]]

# The columns of finejobs_jobs as migration 0003 left them (0004 adds moved_from).
COLUMNS_0003 = (
    "id", "kind", "shard", "payload", "state", "priority", "run_at", "expires_at", "attempt", "max_attempts",
    "unique_key", "lease_owner", "lease_expires_at", "errors", "created_at", "started_at", "finished_at",
    "schedule_id", "fire_at", "result", "claims",
)


@pytest.fixture
def raw(fresh: Queue, empty_database_url: str) -> Iterator[DB]:
    """An autocommit connection to the test's own database, rows as dicts."""
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True, row_factory=dict_row) as conn:
        yield conn


def ok_kind(q: Queue) -> JobKind[Any, Any]:
    return q.kind("ok")


def claim(q: Queue, clock: FakeClock, shard: str, *, limit: int = 1, owner: str = "w1") -> list[Job]:
    return q.store.job_claim(owner=owner, shard=shard, kinds=["ok"], limit=limit, lease=LEASE, now=clock())


def finish(q: Queue, clock: FakeClock, job: Job, *, owner: str = "w1") -> None:
    assert q.store.job_complete_many([succeeded(job, now=clock())], owner=owner) == {job.id}


def enqueue_succeeded(q: Queue, clock: FakeClock, shard: str) -> int:
    """Enqueue one job in ``shard`` and run it to success (the shard must have no other due job)."""
    job = ok_kind(q).enqueue({"done": True}, shard=shard)
    (claimed,) = claim(q, clock, shard)
    assert claimed.id == job.id
    finish(q, clock, claimed)
    return job.id


def where(conn: DB, job_id: int) -> str:
    """The table (partition) that holds the job's row."""
    row = conn.execute("SELECT tableoid::regclass::text AS t FROM finejobs_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None, f"job {job_id} is gone"
    return str(row["t"])


def full_rows(conn: DB, ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = conn.execute("SELECT * FROM finejobs_jobs WHERE id = ANY(%s) ORDER BY id", (ids,)).fetchall()
    return {r["id"]: r for r in rows}


def partitions_of(conn: DB) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'finejobs_jobs'::regclass").fetchall()
    return {r["name"] for r in rows}


# ---------------------------------------------------------------- shard_add


def test_shard_add_moves_the_shards_rows_into_its_own_partition(fresh: Queue, raw: DB, clock: FakeClock) -> None:
    ok = ok_kind(fresh)
    done_id = enqueue_succeeded(fresh, clock, "district-3")
    run = ok.enqueue({"n": "running"}, shard="district-3", priority=1)
    (running,) = claim(fresh, clock, "district-3")
    assert running.id == run.id and running.state is JobState.RUNNING
    waiting = ok.enqueue({"n": "waiting"}, shard="district-3")
    scheduled = ok.enqueue({"n": "later"}, shard="district-3", run_at=clock() + HOUR, unique_key="u1")
    other = ok.enqueue({"n": "elsewhere"}, shard="x")
    mine = [done_id, run.id, waiting.id, scheduled.id]

    for job_id in [*mine, other.id]:
        assert where(raw, job_id) == DEFAULT_PARTITION
    before = full_rows(raw, [*mine, other.id])

    assert fresh.store.shard_add(["district-3"]) == ["district-3"]

    part = partition_name("district-3")
    assert fresh.store.shard_partitions() == {"district-3": part}
    assert partitions_of(raw) == {DEFAULT_PARTITION, part}
    assert {job_id: where(raw, job_id) for job_id in mine} == dict.fromkeys(mine, part)
    assert where(raw, other.id) == DEFAULT_PARTITION
    assert full_rows(raw, [*mine, other.id]) == before  # same ids, states, attempts, leases, payloads...
    assert raw.execute("SELECT count(*) AS n FROM finejobs_jobs").fetchone() == {"n": 5}

    assert fresh.store.shard_add(["district-3"]) == []
    assert full_rows(raw, [*mine, other.id]) == before

    # The claim made before the move still completes, in the new partition.
    clock.advance(SECOND)
    finish(fresh, clock, running)
    assert fresh.get(run.id).state is JobState.SUCCEEDED
    assert where(raw, run.id) == part

    # New jobs of the shard land in its partition, and its unique keys still hold there.
    new = ok.enqueue({"n": "new"}, shard="district-3")
    assert new.id > max(before)
    assert where(raw, new.id) == part
    assert ok.enqueue({"n": "again"}, shard="district-3", unique_key="u1").id == scheduled.id
    assert where(raw, ok.enqueue({"n": "x2"}, shard="x").id) == DEFAULT_PARTITION

    # Workers of the shard claim from the partition, in claim order.
    assert [j.id for j in claim(fresh, clock, "district-3", limit=10)] == [waiting.id, new.id]


# ---------------------------------------------------------------- partition pruning


def plan_nodes(explained: Any) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) result, depth first."""
    stack = [entry["Plan"] for entry in explained]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.get("Plans", []))


def scanned_relations(explained: Any) -> list[str]:
    """Every relation the plan's nodes read: the "Relation Name" of every node but ModifyTable (whose own
    name is the target table, and whose "Target Tables" list the result relations, not scans)."""
    return [node["Relation Name"] for node in plan_nodes(explained)
            if "Relation Name" in node and node["Node Type"] != "ModifyTable"]


def subplans_removed(explained: Any) -> int:
    """Partitions pruned at executor start, summed over every Append / Merge Append."""
    return sum(int(node.get("Subplans Removed", 0)) for node in plan_nodes(explained))


def job_partitions_in(relations: list[str]) -> set[str]:
    return {r for r in relations if r == "finejobs_jobs" or r.startswith("finejobs_jobs_")}


@pytest.fixture
def three_shards(fresh: Queue, clock: FakeClock) -> Queue:
    """Shards a, b and c with partitions of their own, rows in each, and rows of shard z in the default one."""
    assert fresh.store.shard_add(["a", "b", "c"]) == ["a", "b", "c"]
    ok = ok_kind(fresh)
    for shard in ("a", "b", "c", "z"):
        ok.enqueue_many([{"i": i} for i in range(20)], shard=shard)
        claim(fresh, clock, shard, limit=5)
        ok.enqueue({"i": "expiring"}, shard=shard, expires_at=clock() + HOUR)
    return fresh


def statement_params(clock: FakeClock) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The per-shard statements and the parameters their JobStore method binds (shard b)."""
    now = clock()
    return {
        "claim": (_CLAIM, {"owner": "w1", "shard": "b", "kinds": ["ok"], "limit": 10, "now": now,
                           "lease_deadline": now + LEASE}),
        "rescue": (_RESCUE_EXPIRED_LEASES[True], {"now": now, "now_iso": now.isoformat(), "limit": 1000,
                                                  "error": "LeaseExpired", "message": "lost", "shard": "b"}),
        "expire": (_EXPIRE_OVERDUE[True], {"now": now, "now_iso": now.isoformat(), "limit": 1000, "shard": "b"}),
        "prune": (_PRUNE[True], {"state": "succeeded", "cutoff": now, "limit": 1000, "shard": "b"}),
        "complete": (_COMPLETE_IN_SHARD, {"owner": "w1", "shard": "b",
                                          "rows": '[{"id": 1, "attempt": 1, "claims": 1, "state": "succeeded", '
                                                  '"uncount": 0, "run_at": null, "finished_at": null, '
                                                  '"error": null, "result": null}]'}),
    }


STATEMENTS = ["claim", "rescue", "expire", "prune", "complete"]


@pytest.mark.parametrize("name", STATEMENTS)
def test_per_shard_statement_plans_touch_only_that_shards_partition(
    three_shards: Queue, raw: DB, clock: FakeClock, name: str
) -> None:
    raw.execute("ANALYZE finejobs_jobs")
    stmt, params = statement_params(clock)[name]
    plan = raw.execute("EXPLAIN (FORMAT JSON) " + _compiled_for_psycopg(stmt), params).fetchone()
    assert plan is not None
    relations = scanned_relations(plan["QUERY PLAN"])
    assert job_partitions_in(relations) == {partition_name("b")}, (
        f"{name}: the plan reads {sorted(job_partitions_in(relations))}, not only shard b's partition")


def to_prepared(stmt_sql: str) -> tuple[str, list[str]]:
    """A psycopg statement (%(name)s placeholders) as the body of PREPARE ($n), and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, stmt_sql).replace("%%", "%"), names


def explain_generic(conn: DB, body: str, args: list[Any]) -> Any:
    """EXPLAIN of the generic plan of ``body`` executed with ``args`` (run-time pruning is shown)."""
    conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        conn.execute(sql.SQL("PREPARE finejobs_p AS {}").format(sql.SQL(body)))  # type: ignore[arg-type]
        literals = sql.SQL(", ").join(sql.Literal(a) for a in args)
        row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE finejobs_p({})").format(literals)).fetchone()
        assert row is not None
        return row["QUERY PLAN"]
    finally:
        conn.execute("DEALLOCATE ALL")
        conn.execute("RESET plan_cache_mode")


def test_generic_plan_of_the_claim_scan_prunes_at_executor_start(three_shards: Queue, raw: DB,
                                                                  clock: FakeClock) -> None:
    raw.execute("ANALYZE finejobs_jobs")
    body = """
        SELECT id FROM finejobs_jobs
        WHERE state = 'available' AND shard = $1 AND run_at <= $2 AND kind = ANY($3::text[])
          AND (expires_at IS NULL OR expires_at > $2)
        ORDER BY priority DESC, run_at, id
        LIMIT $4
        FOR UPDATE SKIP LOCKED
    """
    plan = explain_generic(raw, body, ["b", clock(), ["ok"], 10])
    # A generic plan cannot prune at plan time: the Append keeps every partition, and executor start removes
    # all but b's (a, c and the default one).
    assert job_partitions_in(scanned_relations(plan)) == {partition_name("b")}
    assert subplans_removed(plan) == 3


@pytest.mark.parametrize("name", STATEMENTS)
def test_generic_plans_of_per_shard_statements_touch_only_that_shards_partition(
    three_shards: Queue, raw: DB, clock: FakeClock, name: str
) -> None:
    # psycopg prepares a statement after a few runs, and the server may then switch to its generic plan.
    raw.execute("ANALYZE finejobs_jobs")
    stmt, params = statement_params(clock)[name]
    body, names = to_prepared(_compiled_for_psycopg(stmt))
    plan = explain_generic(raw, body, [params[n] for n in names])
    relations = scanned_relations(plan)
    assert job_partitions_in(relations) == {partition_name("b")}, (
        f"{name}: the generic plan reads {sorted(job_partitions_in(relations))}, not only shard b's partition")
    assert subplans_removed(plan) > 0


# ---------------------------------------------------------------- migration 0004


def insert_0003(conn: DB, rows: list[dict[str, Any]], *, explicit_id: bool) -> list[int]:
    ids = []
    for row in rows:
        cols = list(row)
        stmt = sql.SQL("INSERT INTO finejobs_jobs ({}) {} VALUES ({}) RETURNING id").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL("OVERRIDING SYSTEM VALUE" if explicit_id else ""),
            sql.SQL(", ").join(sql.Placeholder(c) for c in cols),
        )
        found = conn.execute(stmt, row).fetchone()
        assert found is not None
        ids.append(found["id"])
    return ids


def test_migration_0004_keeps_every_job_of_0003(empty_database_url: str, clock: FakeClock) -> None:
    q = finejobs.Queue(empty_database_url, clock=clock)
    try:
        assert q.store.migrate(target=3) == [1, 2, 3]
        t0 = clock()
        jsonb = psycopg.types.json.Jsonb
        error = {"attempt": 3, "at": t0.isoformat(), "error": "RuntimeError", "message": "gateway down",
                 "traceback": "Traceback ...", "worker": "w7"}
        with psycopg.connect(libpq_url(empty_database_url), autocommit=True, row_factory=dict_row) as conn:
            by_identity = insert_0003(conn, [
                {"kind": "ok", "shard": "a", "payload": jsonb({"n": 1, "nested": {"x": [1, 2]}}), "priority": 5,
                 "run_at": t0, "unique_key": "k-a", "created_at": t0},
                {"kind": "ok", "shard": "b", "payload": jsonb({"n": 2}), "run_at": t0 + HOUR,
                 "expires_at": t0 + 2 * HOUR, "unique_key": "k-b", "created_at": t0, "max_attempts": 5},
                {"kind": "ok", "shard": "c", "payload": jsonb({"n": 3}), "state": "running", "attempt": 1,
                 "claims": 2, "lease_owner": "w9", "lease_expires_at": t0 + LEASE, "started_at": t0,
                 "run_at": t0 - SECOND, "unique_key": "k-c", "created_at": t0 - HOUR},
            ], explicit_id=False)
            explicit = insert_0003(conn, [
                {"id": 40, "kind": "ok", "shard": "a", "payload": jsonb({}), "state": "succeeded", "attempt": 1,
                 "claims": 1, "run_at": t0 - HOUR, "started_at": t0 - HOUR, "finished_at": t0 - HOUR + SECOND,
                 "schedule_id": 7, "fire_at": t0 - HOUR, "result": "idle", "created_at": t0 - HOUR},
                {"id": 41, "kind": "ok", "shard": "b", "payload": jsonb({"n": 41}), "state": "failed", "attempt": 3,
                 "max_attempts": 3, "claims": 3, "errors": jsonb([error, error]), "run_at": t0 - HOUR,
                 "started_at": t0 - HOUR, "finished_at": t0 - 30 * SECOND, "result": "timeout",
                 "created_at": t0 - 2 * HOUR},
                {"id": 42, "kind": "ok", "shard": "c", "payload": jsonb({"n": 42}), "state": "expired",
                 "expires_at": t0 - HOUR, "errors": jsonb([{**error, "error": "Expired", "attempt": 0}]),
                 "run_at": t0 - 2 * HOUR, "finished_at": t0 - HOUR, "created_at": t0 - 3 * HOUR},
                {"id": 43, "kind": "ok", "shard": "a", "payload": jsonb({"n": 43}), "state": "cancelled",
                 "unique_key": "k-a", "errors": jsonb([{**error, "error": "Cancelled"}]), "run_at": t0,
                 "finished_at": t0, "created_at": t0},
            ], explicit_id=True)
            assert by_identity == [1, 2, 3] and explicit == [40, 41, 42, 43]
            columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS_0003))
            read = sql.SQL("SELECT {} FROM finejobs_jobs ORDER BY id").format(columns)
            before = conn.execute(read).fetchall()

            assert q.store.migrate(target=4) == [4]

            after = conn.execute(read).fetchall()
            assert [r["id"] for r in after] == [1, 2, 3, 40, 41, 42, 43]
            for old, new in zip(before, after, strict=True):
                for column in COLUMNS_0003:
                    assert new[column] == old[column], f"job {old['id']}: {column} {old[column]!r} -> {new[column]!r}"
            assert conn.execute("SELECT count(*) AS n FROM finejobs_jobs WHERE moved_from IS NOT NULL"
                                ).fetchone() == {"n": 0}
            tables = conn.execute("SELECT DISTINCT tableoid::regclass::text AS t FROM finejobs_jobs").fetchall()
            assert tables == [{"t": DEFAULT_PARTITION}]
            assert to_regclass(conn, "finejobs_jobs_0003") is None

            @q.job("ok")
            def ok(payload: dict[str, Any]) -> None:
                pass

            # The identity goes on after the highest id kept (not after the sequence's last value, 3).
            new_job = ok.enqueue({"n": "new"}, shard="a")
            assert new_job.id > 43

            # A unique_key is now unique per shard: k-a (held by job 1 in shard a) is free in shard b.
            in_b = ok.enqueue({"n": "k-a in b"}, shard="b", unique_key="k-a")
            assert in_b.id not in (1, new_job.id) and in_b.id > 43
            assert ok.enqueue({"n": "k-a in a"}, shard="a", unique_key="k-a").id == 1
            assert ok.enqueue({"n": "k-b in b"}, shard="b", unique_key="k-b").id == 2
            held = conn.execute("SELECT shard, id FROM finejobs_jobs WHERE unique_key = 'k-a' "
                                "AND state IN ('available', 'running') ORDER BY shard").fetchall()
            assert held == [{"shard": "a", "id": 1}, {"shard": "b", "id": in_b.id}]
    finally:
        q.close()


def to_regclass(conn: DB, name: str) -> str | None:
    row = conn.execute("SELECT to_regclass(%s)::text AS r", (name,)).fetchone()
    assert row is not None
    return row["r"]


# ---------------------------------------------------------------- shard_drop


def test_shard_drop_refuses_unfinished_jobs_then_moves_finished_ones_back(
    fresh: Queue, raw: DB, clock: FakeClock
) -> None:
    ok = ok_kind(fresh)
    assert fresh.store.shard_add(["d", "keep"]) == ["d", "keep"]
    done = enqueue_succeeded(fresh, clock, "keep")  # another shard's jobs do not count
    kept = ok.enqueue({"n": "keep"}, shard="keep")
    run = ok.enqueue({"n": 1}, shard="d")
    (running,) = claim(fresh, clock, "d")
    assert running.id == run.id
    waiting = ok.enqueue({"n": 2}, shard="d", run_at=clock() + HOUR)  # a scheduled job is waiting too

    with pytest.raises(FinejobsError, match=r"2 unfinished"):
        fresh.store.shard_drop("d")
    assert "d" in fresh.store.shard_partitions()
    assert where(raw, run.id) == partition_name("d")

    fresh.cancel(waiting.id)
    with pytest.raises(FinejobsError, match=r"1 unfinished"):  # the running one
        fresh.store.shard_drop("d")
    assert "d" in fresh.store.shard_partitions()

    clock.advance(SECOND)
    finish(fresh, clock, running)
    before = full_rows(raw, [run.id, waiting.id])
    assert [before[i]["state"] for i in (run.id, waiting.id)] == ["succeeded", "cancelled"]

    assert fresh.store.shard_drop("d") == 2

    assert fresh.store.shard_partitions() == {"keep": partition_name("keep")}
    assert to_regclass(raw, partition_name("d")) is None
    assert partitions_of(raw) == {DEFAULT_PARTITION, partition_name("keep")}
    assert full_rows(raw, [run.id, waiting.id]) == before
    assert where(raw, run.id) == where(raw, waiting.id) == DEFAULT_PARTITION
    assert where(raw, kept.id) == where(raw, done) == partition_name("keep")

    # The shard goes on in the default partition.
    later = ok.enqueue({"n": 3}, shard="d")
    assert later.id > max(before) and where(raw, later.id) == DEFAULT_PARTITION

    with pytest.raises(FinejobsError, match="no partition"):
        fresh.store.shard_drop("d")
    with pytest.raises(FinejobsError, match="no partition"):
        fresh.store.shard_drop("never-added")


def test_shard_drop_of_an_empty_partition_returns_zero(fresh: Queue, raw: DB) -> None:
    assert fresh.store.shard_add(["e"]) == ["e"]
    assert fresh.store.shard_drop("e") == 0
    assert fresh.store.shard_partitions() == {}
    assert partitions_of(raw) == {DEFAULT_PARTITION}


# ---------------------------------------------------------------- shard_list


def test_shard_list_and_known_shards(fresh: Queue, clock: FakeClock) -> None:
    ok = ok_kind(fresh)
    assert fresh.store.shard_add(["a", "empty"]) == ["a", "empty"]
    enqueue_succeeded(fresh, clock, "a")
    ok.enqueue({"n": "running"}, shard="a")
    assert len(claim(fresh, clock, "a")) == 1
    ok.enqueue({"n": "due"}, shard="a")
    ok.enqueue({"n": "later"}, shard="a", run_at=clock() + HOUR)
    ok.enqueue({"n": "due"}, shard="z")
    enqueue_succeeded(fresh, clock, "fin")
    ok.enqueue({"n": "later"}, shard="later", run_at=clock() + HOUR)

    listed = {s.name: s for s in fresh.store.shard_list(now=clock())}
    assert list(listed) == ["a", "empty", "fin", "later", "z"]
    assert {n: (s.partition, s.own_partition) for n, s in listed.items()} == {
        "a": (partition_name("a"), True),
        "empty": (partition_name("empty"), True),
        "fin": (DEFAULT_PARTITION, False),
        "later": (DEFAULT_PARTITION, False),
        "z": (DEFAULT_PARTITION, False),
    }
    assert {n: s.counts for n, s in listed.items()} == {
        "a": {"succeeded": 1, "running": 1, "available": 1, "scheduled": 1},
        "empty": {},
        "fin": {"succeeded": 1},
        "later": {"scheduled": 1},
        "z": {"available": 1},
    }
    assert {n: s.unfinished for n, s in listed.items()} == {"a": 3, "empty": 0, "fin": 0, "later": 1, "z": 1}

    # Known: partitions, plus shards with waiting (due or scheduled) jobs; "fin" has only a finished job.
    assert fresh.store.shard_list_known() == ["a", "empty", "later", "z"]

    # When the scheduled job comes due it is counted as available.
    clock.advance(2 * HOUR)
    assert {s.name: s.counts for s in fresh.store.shard_list(now=clock())}["later"] == {"available": 1}


# ---------------------------------------------------------------- per-shard maintenance


def test_per_shard_maintenance_touches_only_the_named_shards(fresh: Queue, raw: DB, clock: FakeClock) -> None:
    ok = ok_kind(fresh)
    assert fresh.store.shard_add(["a", "b"]) == ["a", "b"]
    made: dict[str, dict[str, int]] = {}
    for shard in ("a", "b"):
        finished = enqueue_succeeded(fresh, clock, shard)
        lost = ok.enqueue({"n": "lost lease"}, shard=shard)
        assert [j.id for j in claim(fresh, clock, shard)] == [lost.id]
        overdue = ok.enqueue({"n": "overdue"}, shard=shard, expires_at=clock() + 10 * SECOND)
        made[shard] = {"finished": finished, "lost": lost.id, "overdue": overdue.id}

    def state(job_id: int) -> str | None:
        row = raw.execute("SELECT state FROM finejobs_jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else str(row["state"])

    clock.advance(HOUR)
    now = clock()
    store = fresh.store

    assert store.job_rescue_expired_leases(now=now, shards=["a"]) == {made["a"]["lost"]: JobState.AVAILABLE}
    assert (state(made["a"]["lost"]), state(made["b"]["lost"])) == ("available", "running")

    assert store.job_expire_overdue(now=now, shards=["a"]) == 1
    assert (state(made["a"]["overdue"]), state(made["b"]["overdue"])) == ("expired", "available")

    retention = {JobState.SUCCEEDED: timedelta(minutes=10)}
    assert store.job_prune_finished(retention=retention, now=now, shards=["a"]) == {"succeeded": 1}
    assert (state(made["a"]["finished"]), state(made["b"]["finished"])) == (None, "succeeded")

    # Shards with nothing to do, and a shard without a partition, change nothing.
    assert store.job_rescue_expired_leases(now=now, shards=["a", "nowhere"]) == {}
    assert store.job_expire_overdue(now=now, shards=["a", "nowhere"]) == 0
    assert store.job_prune_finished(retention=retention, now=now, shards=["a", "nowhere"]) == {}

    # shards=None: every shard (b's are left).
    assert store.job_rescue_expired_leases(now=now) == {made["b"]["lost"]: JobState.AVAILABLE}
    assert store.job_expire_overdue(now=now) == 1
    assert store.job_prune_finished(retention=retention, now=now) == {"succeeded": 1}
    assert (state(made["b"]["lost"]), state(made["b"]["overdue"]), state(made["b"]["finished"])) == (
        "available", "expired", None)
    # The jobs stay in their shard's partition.
    assert where(raw, made["b"]["lost"]) == partition_name("b")
    assert where(raw, made["a"]["overdue"]) == partition_name("a")


# ---------------------------------------------------------------- locking


def test_shard_add_gives_up_on_a_held_lock_then_succeeds(fresh: Queue, raw: DB, empty_database_url: str) -> None:
    with psycopg.connect(libpq_url(empty_database_url)) as other:  # a transaction left open
        row = other.execute("INSERT INTO finejobs_jobs (kind, shard) VALUES ('ok', 'late') RETURNING id").fetchone()
        assert row is not None
        job_id = row[0]
        with pytest.raises(FinejobsError, match=r"could not lock the job table within 0\.5s"):
            fresh.store.shard_add(["late"], lock_timeout=timedelta(seconds=0.5))
        assert fresh.store.shard_partitions() == {}
        other.commit()

    assert where(raw, job_id) == DEFAULT_PARTITION
    assert fresh.store.shard_add(["late"], lock_timeout=timedelta(seconds=0.5)) == ["late"]
    assert where(raw, job_id) == partition_name("late")
    assert fresh.store.shard_partitions() == {"late": partition_name("late")}
