"""The operations API (finejobs.admin) on a real PostgreSQL: filters, keyset pages against a Python model of
the rows, cursors, bounded scans and counts, bulk actions in batches, pauses, the worker registry, stats and
its cache, the audit log, refusals that write nothing, and the plans of the main statements.

Rows are written with SQL where a test needs jobs in many states at once (the states and columns are the
ones the worker writes); single-job actions go through the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

import finejobs.admin as admin_module
import finejobs.admin.core as admin_core
from finejobs import Every, FinejobsError, InvalidJobOptions, JobNotFound, JobState, Queue
from finejobs.admin import Admin, BulkResult, Count, JobPage
from finejobs.devdb import create_database, drop_database
from finejobs.filters import JobFilter
from finejobs.sharding import ShardMap
from finejobs.store import libpq_url
from finejobs.store import operations as ops
from finejobs.store import schedules as schedule_store
from finejobs.testing import FakeClock
from tests.conftest import T0

Conn = psycopg.Connection[tuple[Any, ...]]
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
FINAL = ("succeeded", "failed", "expired", "cancelled")

# ---------------------------------------------------------------- rows and a Python model of them


@dataclass(frozen=True)
class Row:
    kind: str = "ok"
    shard: str = "default"
    state: str = "available"  # a stored state
    run_at: datetime = T0
    created_at: datetime = T0
    finished_at: datetime | None = None
    messages: tuple[str, ...] = ()  # the attempts' error messages, oldest first
    unique_key: str | None = None
    schedule_id: int | None = None
    expires_at: datetime | None = None
    priority: int = 0
    id: int = 0

    def effective(self, now: datetime) -> str:
        return "scheduled" if self.state == "available" and self.run_at > now else self.state

    def matches(self, f: JobFilter, now: datetime, schedule_ids: Mapping[str, int]) -> bool:
        last = self.messages[-1] if self.messages else None
        return ((f.state is None or f.state.value == self.effective(now))
                and (f.kind is None or f.kind == self.kind) and (f.shard is None or f.shard == self.shard)
                and (f.schedule is None or schedule_ids.get(f.schedule, -1) == self.schedule_id)
                and (f.error is None or (last is not None and f.error.lower() in last.lower()))
                and (f.created_after is None or self.created_at >= f.created_after)
                and (f.created_before is None or self.created_at < f.created_before)
                and (f.finished_after is None or (self.finished_at is not None
                                                  and self.finished_at >= f.finished_after))
                and (f.finished_before is None or (self.finished_at is not None
                                                   and self.finished_at < f.finished_before)))


_INSERT = """
INSERT INTO finejobs_jobs (kind, shard, state, run_at, created_at, started_at, finished_at, errors, unique_key,
                           schedule_id, expires_at, priority, attempt, max_attempts, lease_owner, lease_expires_at)
SELECT r.kind, r.shard, r.state, r.run_at, r.created_at,
       CASE WHEN r.state <> 'available' THEN r.created_at END, r.finished_at, r.errors, r.unique_key,
       r.schedule_id, r.expires_at, r.priority, CASE WHEN r.state = 'available' THEN 0 ELSE 1 END, 3,
       CASE WHEN r.state = 'running' THEN 'worker-1' END,
       CASE WHEN r.state = 'running' THEN r.run_at + interval '1 minute' END
FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS (kind text, shard text, state text, run_at timestamptz,
     created_at timestamptz, finished_at timestamptz, errors jsonb, unique_key text, schedule_id bigint,
     expires_at timestamptz, priority smallint)) WITH ORDINALITY AS r(kind, shard, state, run_at, created_at,
     finished_at, errors, unique_key, schedule_id, expires_at, priority, ord)
ORDER BY r.ord
RETURNING id
"""


def _errors(messages: tuple[str, ...], at: datetime) -> list[dict[str, Any]]:
    return [{"attempt": i + 1, "at": at.isoformat(), "error": "GatewayError", "message": m, "traceback": None,
             "worker": "worker-1"} for i, m in enumerate(messages)]


def add(db: Conn, *rows: Row) -> list[Row]:
    """Insert rows in order (ids ascending); returns them with their ids."""
    data = [{"kind": r.kind, "shard": r.shard, "state": r.state, "run_at": r.run_at.isoformat(),
             "created_at": r.created_at.isoformat(),
             "finished_at": (r.finished_at or (r.created_at + SECOND if r.state in FINAL else None)),
             "errors": _errors(r.messages, r.created_at), "unique_key": r.unique_key, "schedule_id": r.schedule_id,
             "expires_at": r.expires_at.isoformat() if r.expires_at else None, "priority": r.priority}
            for r in rows]
    for d in data:
        if isinstance(d["finished_at"], datetime):
            d["finished_at"] = d["finished_at"].isoformat()
    ids = [int(i) for (i,) in db.execute(_INSERT, (json.dumps(data),)).fetchall()]
    out = []
    for r, i, d in zip(rows, ids, data, strict=True):
        finished = datetime.fromisoformat(d["finished_at"]) if d["finished_at"] else None
        out.append(replace(r, id=i, finished_at=finished))
    return out


def page_all(admin: Admin, filt: JobFilter | None = None, *, limit: int = 50) -> tuple[list[int], list[JobPage]]:
    """Every page of a listing: the ids in order, and the pages."""
    pages, cursor = [], None
    while True:
        page = admin.jobs(filt, cursor=cursor, limit=limit)
        pages.append(page)
        assert len(page.jobs) <= limit
        cursor = page.next_cursor
        if cursor is None:
            return [j.id for p in pages for j in p.jobs], pages
        assert len(pages) < 10_000


def snapshot(db: Conn) -> list[tuple[Any, ...]]:
    """Everything an action could write."""
    return [*db.execute("SELECT * FROM finejobs_jobs ORDER BY id").fetchall(),
            *db.execute("SELECT * FROM finejobs_pauses ORDER BY id").fetchall(),
            *db.execute("SELECT * FROM finejobs_audit ORDER BY id").fetchall()]


def audit_rows(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute("SELECT actor, action, target, count, detail FROM finejobs_audit ORDER BY id").fetchall()


@pytest.fixture
def admin(queue: Queue, db: Conn) -> Admin:
    """The operations API on the session's database, with no pauses, workers or audit entries left over."""
    db.execute("TRUNCATE finejobs_pauses, finejobs_workers, finejobs_audit RESTART IDENTITY")

    @queue.job("ok")
    def ok(payload: dict[str, object]) -> None:
        pass

    return Admin(queue, actor="alice")


# ---------------------------------------------------------------- filters


def test_each_filter_field_selects_what_it_says(admin: Admin, db: Conn, clock: FakeClock) -> None:
    admin.schedules.add("nightly", "ok", Every(hours=1), paused=True)
    (schedule_id,) = db.execute("SELECT id FROM finejobs_schedules WHERE name = 'nightly'").fetchone() or (0,)
    rows = add(db,
               Row(state="available", run_at=T0 - MINUTE),  # available
               Row(state="available", run_at=T0 + MINUTE),  # scheduled
               Row(state="available", run_at=T0),  # due exactly now: available
               Row(state="running", kind="sms", shard="s1"),
               Row(state="succeeded", kind="sms", shard="s2", schedule_id=schedule_id,
                   created_at=T0 - 10 * MINUTE, finished_at=T0 - 9 * MINUTE),
               Row(state="failed", messages=("timeout", "Bad Phone number"), created_at=T0 - 5 * MINUTE,
                   finished_at=T0 - 4 * MINUTE),
               Row(state="failed", messages=("bad phone", "timeout")),  # "bad phone" is not its LAST error
               Row(state="failed", messages=("100% done_1",)),
               Row(state="failed", messages=("1000 doneX1",)),
               Row(state="expired", shard="s1"),
               Row(state="cancelled", kind="sms", messages=("patient opted out",)))
    by = {i: r for i, r in enumerate(rows)}
    schedule_ids = {"nightly": schedule_id}

    def ids(filt: JobFilter) -> list[int]:
        found, _ = page_all(admin, filt, limit=3)
        model = sorted((r.id for r in rows if r.matches(filt, clock(), schedule_ids)), reverse=True)
        assert found == model, filt
        assert admin.count(filt) == Count(len(model), False)
        return found

    assert ids(JobFilter(state="available")) == [by[2].id, by[0].id]
    assert ids(JobFilter(state="scheduled")) == [by[1].id]
    assert ids(JobFilter(state="running")) == [by[3].id]
    for state, expected in (("succeeded", [4]), ("failed", [8, 7, 6, 5]), ("expired", [9]), ("cancelled", [10])):
        assert ids(JobFilter(state=state)) == [by[i].id for i in expected]  # type: ignore[arg-type]
    assert ids(JobFilter(kind="sms")) == [by[10].id, by[4].id, by[3].id]
    assert ids(JobFilter(shard="s1")) == [by[9].id, by[3].id]
    assert ids(JobFilter(shard="s1", state="expired")) == [by[9].id]
    assert ids(JobFilter(schedule="nightly")) == [by[4].id]
    assert ids(JobFilter(schedule="no-such-schedule")) == []
    assert ids(JobFilter(error="bad phone")) == [by[5].id]  # the last error only, case-insensitive
    assert ids(JobFilter(error="TIMEOUT")) == [by[6].id]
    assert ids(JobFilter(error="100% done_")) == [by[7].id]  # % and _ are plain text, not wildcards
    assert ids(JobFilter(error="opted", kind="sms", state="cancelled")) == [by[10].id]
    assert ids(JobFilter(created_after=T0 - 10 * MINUTE, created_before=T0 - 5 * MINUTE)) == [by[4].id]
    assert ids(JobFilter(created_after=T0 - 5 * MINUTE, created_before=T0)) == [by[5].id]  # half-open
    assert ids(JobFilter(finished_after=T0 - 9 * MINUTE)) == [by[i].id for i in (10, 9, 8, 7, 6, 5, 4)]
    assert ids(JobFilter(finished_before=T0 - 9 * MINUTE)) == []
    assert ids(JobFilter(finished_after=T0 - 4 * MINUTE, finished_before=T0)) == [by[5].id]
    assert ids(JobFilter(state="available", shard="s2")) == []


def test_scheduled_becomes_available_as_the_clock_moves(admin: Admin, db: Conn, clock: FakeClock) -> None:
    (row,) = add(db, Row(run_at=T0 + MINUTE))
    assert [j.id for j in admin.jobs(JobFilter(state="scheduled")).jobs] == [row.id]
    assert admin.jobs(JobFilter(state="available")).jobs == ()
    clock.advance(MINUTE)
    assert [j.id for j in admin.jobs(JobFilter(state="available")).jobs] == [row.id]
    assert admin.job(row.id).state is JobState.AVAILABLE


# ---------------------------------------------------------------- keyset pages


STATES = ("available", "running", "succeeded", "failed", "expired", "cancelled")
MESSAGES = ((), ("timeout",), ("timeout", "bad phone"), ("Bad Phone",), ("50% done_x",))

rows_strategy = st.lists(st.builds(
    Row,
    kind=st.sampled_from(("a", "b", "c")),
    shard=st.sampled_from(("s1", "s2")),
    state=st.sampled_from(STATES),
    run_at=st.sampled_from((T0 - MINUTE, T0, T0 + MINUTE)),
    created_at=st.integers(0, 9).map(lambda m: T0 - m * MINUTE),
    messages=st.sampled_from(MESSAGES),
), max_size=40)

filters_strategy = st.builds(
    JobFilter,
    state=st.none() | st.sampled_from(list(JobState)),
    kind=st.none() | st.sampled_from(("a", "b", "zzz")),
    shard=st.none() | st.sampled_from(("s1", "s2")),
    error=st.none() | st.sampled_from(("timeout", "PHONE", "% done_")),
    created_after=st.none() | st.integers(0, 9).map(lambda m: T0 - m * MINUTE),
    finished_before=st.none() | st.just(T0 - 3 * MINUTE),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, filt=filters_strategy, limit=st.integers(1, 7), scan=st.integers(1, 12))
def test_pages_match_a_python_model_never_repeating_or_skipping(
        admin: Admin, db: Conn, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
        rows: list[Row], filt: JobFilter, limit: int, scan: int) -> None:
    db.execute("TRUNCATE finejobs_jobs RESTART IDENTITY")
    monkeypatch.setattr(admin_core, "PAGE_SCAN", scan)
    stored = add(db, *rows)
    found, pages = page_all(admin, filt, limit=limit)
    model = sorted((r.id for r in stored if r.matches(filt, clock(), {})), reverse=True)
    assert found == model
    assert len(set(found)) == len(found)
    for page in pages:
        assert page.examined <= scan  # one database: at most PAGE_SCAN rows examined per page
    count = admin.count(filt)
    assert count == Count(len(model), False)


@pytest.mark.parametrize(("limit", "scan"), [(1, 2000), (3, 2000), (50, 2000), (2, 3), (5, 1), (7, 4)])
def test_pages_table_driven(admin: Admin, db: Conn, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
                            limit: int, scan: int) -> None:
    monkeypatch.setattr(admin_core, "PAGE_SCAN", scan)
    rows = add(db, *(Row(kind="ab"[i % 2], state=STATES[i % 6], messages=MESSAGES[i % 5],
                         shard=("s1", "s2", "s3")[i % 3]) for i in range(30)))
    for filt in (JobFilter(), JobFilter(kind="a"), JobFilter(state="failed"), JobFilter(shard="s3", kind="b"),
                 JobFilter(error="timeout"), JobFilter(state="scheduled"), JobFilter(kind="nothing")):
        found, _ = page_all(admin, filt, limit=limit)
        assert found == sorted((r.id for r in rows if r.matches(filt, clock(), {})), reverse=True), filt


def test_pages_stay_exact_while_jobs_come_and_go(admin: Admin, db: Conn) -> None:
    rows = add(db, *(Row() for _ in range(10)))
    first = admin.jobs(limit=4)
    assert [j.id for j in first.jobs] == [r.id for r in rows[::-1][:4]]
    newer = add(db, Row(), Row())  # newer ids: not part of this listing
    gone = rows[4].id  # on the next page
    db.execute("DELETE FROM finejobs_jobs WHERE id = %s", (gone,))
    rest, _ = page_all_from(admin, first.next_cursor, limit=4)
    assert rest == [r.id for r in rows[::-1][4:] if r.id != gone]
    assert not set(rest) & {r.id for r in newer}


def page_all_from(admin: Admin, cursor: str | None, *, filt: JobFilter | None = None,
                  limit: int = 50) -> tuple[list[int], int]:
    found, pages = [], 0
    while cursor is not None:
        page = admin.jobs(filt, cursor=cursor, limit=limit)
        found += [j.id for j in page.jobs]
        cursor, pages = page.next_cursor, pages + 1
    return found, pages


def test_a_page_that_examined_its_cap_returns_a_cursor_to_go_on(admin: Admin, db: Conn,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_core, "PAGE_SCAN", 5)
    rare = add(db, Row(kind="rare"), Row(kind="rare"))
    add(db, *(Row(kind="common") for _ in range(12)))  # newer: examined first
    page = admin.jobs(JobFilter(kind="rare"), limit=10)
    assert page.jobs == () and page.examined == 5 and page.next_cursor is not None
    found, pages = page_all_from(admin, page.next_cursor, filt=JobFilter(kind="rare"), limit=10)
    assert found == [rare[1].id, rare[0].id]
    assert pages == 2  # after the first: 5 rows examined, then the last 4
    # a page that is full before its cap says where to go on, too
    full = admin.jobs(JobFilter(kind="common"), limit=3)
    assert len(full.jobs) == 3 and full.examined == 5 and full.next_cursor is not None


def test_pages_over_two_databases_of_a_shard_map(server_url: str, clock: FakeClock,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    urls = {name: create_database(server_url, prefix=f"finejobs_admin_{name}") for name in ("a", "b")}
    try:
        shard_map = ShardMap(urls, {"a": ["east"], "b": ["west"]}, default="a")
        queue = Queue(shard_map=shard_map, clock=clock)
        queue.migrate()

        @queue.job("ok")
        def ok(payload: dict[str, object]) -> None:
            pass

        east = [queue.enqueue("ok", {}, shard="east").id for _ in range(5)]
        west = [queue.enqueue("ok", {}, shard="west").id for _ in range(4)]
        admin = Admin(queue)
        monkeypatch.setattr(admin_core, "PAGE_SCAN", 3)
        for limit in (1, 2, 4, 50):
            found, pages = page_all(admin, limit=limit)
            assert found == east[::-1] + west[::-1]  # database by database, newest first in each
            assert all(p.examined <= 2 * 3 for p in pages)
        assert page_all(admin, JobFilter(shard="west"))[0] == west[::-1]
        assert page_all(admin, JobFilter(database="b"))[0] == west[::-1]
        assert admin.count() == Count(9, False)
        with pytest.raises(InvalidJobOptions, match="database: 'c' is not in the shard map"):
            admin.jobs(JobFilter(database="c"))
        with pytest.raises(FinejobsError, match="exists in databases a, b: name one"):
            admin.job(1)
        assert admin.job(1, database="b").shard == "west"
        result = admin.cancel_matching(JobFilter(state="available"))
        assert (result.matched, result.changed) == (9, 9)
        assert admin.stats(fresh=True).by_shard == {"east": {"cancelled": 5}, "west": {"cancelled": 4}}
        assert {(s.name, s.database, s.placed) for s in admin.shards()} == {("east", "a", True), ("west", "b", True)}
        queue.close()
    finally:
        for url in urls.values():
            drop_database(server_url, url)


# ---------------------------------------------------------------- cursors


def test_forged_and_foreign_cursors_are_refused(admin: Admin, db: Conn, fresh: Queue) -> None:
    add(db, *(Row(state="failed" if i % 2 else "succeeded") for i in range(10)))
    page = admin.jobs(JobFilter(state="failed"), limit=2)
    cursor = page.next_cursor
    assert cursor is not None and re.fullmatch(r"0\.[0-9]+\.[0-9a-f]{20}", cursor)
    assert admin.jobs(JobFilter(state="failed"), cursor=cursor, limit=2).jobs  # a real one works
    assert Admin(admin.queue, actor="bob").jobs(JobFilter(state="failed"), cursor=cursor).jobs  # in another Admin
    position, before, mac = cursor.split(".")
    forged = [
        f"{position}.{int(before) + 1}.{mac}",  # another id
        f"{position}.{before}.{'0' * 20}",  # another signature
        f"1.{before}.{mac}",  # another database position
        f"{position}.{before}.{mac.upper()}", f"{position}.{before}.{mac}\n", f" {cursor}", cursor[:-1],
        "0:5", "0.5", "", "x" * 40, "0." + "9" * 30 + "." + mac, "\u0660.1." + mac,  # an Arabic-Indic zero
    ]
    for bad in forged:
        with pytest.raises(InvalidJobOptions, match="cursor: not a cursor from a previous page"):
            admin.jobs(JobFilter(state="failed"), cursor=bad, limit=2)
    for bad_type in (5, b"0.1.x", ["0"]):
        with pytest.raises(InvalidJobOptions, match="cursor"):
            admin.jobs(JobFilter(state="failed"), cursor=bad_type, limit=2)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="of this filter"):
        admin.jobs(JobFilter(state="succeeded"), cursor=cursor, limit=2)  # the cursor of another filter
    with pytest.raises(InvalidJobOptions, match="of this filter"):
        Admin(fresh).jobs(JobFilter(state="failed"), cursor=cursor)  # made for another database


# ---------------------------------------------------------------- counts


def test_count_stops_at_its_cap(admin: Admin, db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    add(db, *(Row(kind="a" if i < 3 else "b", state="failed", messages=("timeout",)) for i in range(10)))
    assert admin.count() == Count(10, False)
    monkeypatch.setattr(admin_core, "COUNT_CAP", 10)
    assert admin.count() == Count(10, True)  # examined its cap: there may be more
    monkeypatch.setattr(admin_core, "COUNT_CAP", 4)
    assert admin.count() == Count(4, True)
    assert admin.count(JobFilter(kind="a")) == Count(0, True)  # the newest 4 are all "b": at least none
    assert admin.count(JobFilter(kind="b", state="failed")) == Count(4, True)
    assert admin.count(JobFilter(state="succeeded")) == Count(0, False)
    assert admin.count(JobFilter(error="timeout")) == Count(10, False)  # its own, smaller cap
    monkeypatch.setattr(admin_core, "ERROR_COUNT_CAP", 3)
    assert admin.count(JobFilter(error="timeout")) == Count(3, True)


def test_count_of_a_shard_with_and_without_a_partition(fresh: Queue, clock: FakeClock) -> None:
    for shard in ("east", "west", "east", "east"):
        fresh.enqueue("ok", {}, shard=shard)
    admin = Admin(fresh)
    assert admin.count(JobFilter(shard="east")) == Count(3, False)
    fresh.store.shard_add(["east"])
    assert admin.count(JobFilter(shard="east")) == Count(3, False)
    assert admin.count(JobFilter(shard="west")) == Count(1, False)
    assert admin.count(JobFilter(shard="north")) == Count(0, False)
    assert [s.own_partition for s in admin.shards()] == [True, False]


# ---------------------------------------------------------------- single-job actions


def test_retry_cancel_delete_one_job(admin: Admin, db: Conn) -> None:
    failed, done, running = add(db, Row(state="failed", messages=("x",)), Row(state="succeeded"),
                                Row(state="running"))
    waiting = admin.queue.enqueue("ok", {})
    job = admin.retry(failed.id)
    assert job.state is JobState.AVAILABLE and job.max_attempts == 3 and job.finished_at is None
    job = admin.cancel(waiting.id, "duplicate")
    assert job.state is JobState.CANCELLED and job.errors[-1].message == "duplicate"
    deleted = admin.delete(done.id)
    assert deleted.id == done.id and deleted.state is JobState.SUCCEEDED
    with pytest.raises(JobNotFound):
        admin.job(done.id)
    before = snapshot(db)
    with pytest.raises(FinejobsError, match=f"cannot delete job {running.id}: it is running"):
        admin.delete(running.id)
    with pytest.raises(FinejobsError, match=r"cannot retry job \d+: it is available"):
        admin.retry(failed.id)
    with pytest.raises(JobNotFound):
        admin.delete(10**9)
    assert snapshot(db) == before  # a refusal writes nothing, not even an audit entry
    assert audit_rows(db) == [
        ("alice", "retry", {"job": failed.id, "database": "default"}, 1, None),
        ("alice", "cancel", {"job": waiting.id, "database": "default"}, 1, "duplicate"),
        ("alice", "delete", {"job": done.id, "database": "default"}, 1, None),
    ]


# ---------------------------------------------------------------- bulk actions


class BatchCounter:
    """Counts the batches (statements of job_bulk) a bulk action runs, without changing them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = ops.OperationsStore.job_bulk

        def counted(store: ops.OperationsStore, **kwargs: Any) -> ops.BulkBatch:
            self.calls += 1
            return original(store, **kwargs)

        monkeypatch.setattr(ops.OperationsStore, "job_bulk", counted)


def test_retry_matching_in_batches(admin: Admin, db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_core, "BULK_BATCH", 3)
    batches = BatchCounter(monkeypatch)
    rows = add(db, *(Row(kind="a" if i % 3 else "b", state=("failed", "expired", "succeeded", "cancelled")[i % 4],
                         messages=("timeout",)) for i in range(40)))
    filt = JobFilter(kind="a")
    expected = {r.id for r in rows if r.kind == "a" and r.state in ("failed", "expired", "cancelled")}
    dry = admin.retry_matching(filt, dry_run=True)
    assert dry == BulkResult("retry", filt, len(expected), 0, True, False)
    assert batches.calls == 0
    result = admin.retry_matching(filt)
    assert (result.matched, result.changed, result.dry_run) == (len(expected), len(expected), False)
    assert batches.calls >= len(expected) // 3 > 1
    now_available = {int(i) for (i,) in db.execute("SELECT id FROM finejobs_jobs WHERE state = 'available'")}
    assert now_available == expected
    assert audit_rows(db) == [("alice", "retry matching", {"filter": {"kind": "a"}}, len(expected), None)]
    assert admin.retry_matching(filt).changed == 0  # nothing left to retry


def test_bulk_batches_are_bounded_by_their_scan_too(admin: Admin, db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_core, "BULK_SCAN", 4)
    batches = BatchCounter(monkeypatch)
    rows = add(db, *(Row(state="succeeded") for _ in range(10)), Row(state="failed"), Row(state="failed"))
    assert admin.retry_matching(JobFilter()).changed == 2
    assert batches.calls == 4  # 12 rows examined 4 at a time, then one that finds nothing
    assert admin.job(rows[-1].id).state is JobState.AVAILABLE


def test_cancel_matching_in_batches_with_a_reason(admin: Admin, db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_core, "BULK_BATCH", 2)
    batches = BatchCounter(monkeypatch)
    rows = add(db, *(Row(shard="s1", state=s) for s in ("available", "running", "succeeded", "available",
                                                          "failed", "available")),
               Row(shard="s1", run_at=T0 + MINUTE), Row(shard="s2"))
    result = admin.cancel_matching(JobFilter(shard="s1"), "district closed")
    assert (result.matched, result.changed) == (5, 5)
    assert batches.calls >= 3
    for r in rows:
        job = admin.job(r.id)
        if r.shard == "s1" and r.state in ("available", "running"):
            assert job.state is JobState.CANCELLED and job.errors[-1].message == "district closed"
            assert job.lease_owner is None and job.finished_at == T0
        else:
            assert job.state.value == r.effective(T0)
    assert audit_rows(db)[-1] == ("alice", "cancel matching", {"filter": {"shard": "s1"}}, 5, "district closed")
    scheduled = admin.cancel_matching(JobFilter(state="scheduled"), dry_run=True)
    assert scheduled.matched == 0


def test_delete_matching_in_batches_leaves_running_jobs(admin: Admin, db: Conn,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_core, "BULK_BATCH", 2)
    batches = BatchCounter(monkeypatch)
    rows = add(db, *(Row(state=STATES[i % 6]) for i in range(12)))
    running = {r.id for r in rows if r.state == "running"}
    assert admin.delete_matching(JobFilter(), dry_run=True).matched == 10
    result = admin.delete_matching(JobFilter())
    assert (result.matched, result.changed) == (10, 10)
    assert batches.calls >= 5
    assert {int(i) for (i,) in db.execute("SELECT id FROM finejobs_jobs")} == running
    with pytest.raises(InvalidJobOptions, match="delete applies to scheduled, available, succeeded"):
        admin.delete_matching(JobFilter(state="running"))
    with pytest.raises(InvalidJobOptions, match="retry applies to failed, expired, cancelled jobs, not scheduled"):
        admin.retry_matching(JobFilter(state="scheduled"))
    with pytest.raises(InvalidJobOptions, match="cancel applies to scheduled, available, running jobs"):
        admin.cancel_matching(JobFilter(state="failed"))


def test_dry_run_changes_nothing_and_counts_what_the_run_does(admin: Admin, db: Conn) -> None:
    add(db, *(Row(kind="ab"[i % 2], state=STATES[i % 6], messages=MESSAGES[i % 5]) for i in range(36)))
    for action, filt in (("retry", JobFilter(error="timeout")), ("cancel", JobFilter(kind="a")),
                         ("delete", JobFilter(state="failed")), ("delete", JobFilter(kind="b"))):
        before = snapshot(db)
        dry = getattr(admin, f"{action}_matching")(filt, dry_run=True)
        assert snapshot(db) == before
        assert dry.dry_run and dry.changed == 0 and not dry.at_least
        real = getattr(admin, f"{action}_matching")(filt)
        assert (real.matched, real.changed) == (dry.matched, dry.matched), (action, filt)


def test_dry_run_count_says_at_least_at_its_cap(admin: Admin, db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    add(db, *(Row(state="failed") for _ in range(6)))
    monkeypatch.setattr(admin_core, "COUNT_CAP", 4)
    assert admin.retry_matching(JobFilter(), dry_run=True) == BulkResult("retry", JobFilter(), 4, 0, True, True)


def test_bulk_retry_leaves_jobs_whose_unique_key_is_held(admin: Admin, db: Conn,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_core, "BULK_BATCH", 3)
    held = add(db, Row(state="failed", unique_key="k1"), Row(state="failed", unique_key="k2"))
    free = add(db, *(Row(state="failed", unique_key=f"free-{i}") for i in range(4)), Row(state="failed"))
    twins = add(db, Row(state="failed", unique_key="twin"), Row(state="failed", unique_key="twin"))
    holders = add(db, Row(unique_key="k1"), Row(state="running", unique_key="k2"))
    other_shard = add(db, Row(state="failed", unique_key="k1", shard="s2"))  # keys are per shard
    result = admin.retry_matching(JobFilter(state="failed"))
    assert result.matched == 10
    assert result.changed == 7  # the 5 free ones, one twin, the k1 of shard s2
    states = dict(db.execute("SELECT id, state FROM finejobs_jobs").fetchall())
    assert [states[r.id] for r in held] == ["failed", "failed"]
    assert all(states[r.id] == "available" for r in free + other_shard)
    assert sorted(states[r.id] for r in twins) == ["available", "failed"]
    assert [states[r.id] for r in holders] == ["available", "running"]
    assert audit_rows(db)[-1][3] == 7


# ---------------------------------------------------------------- pauses


def test_pause_resume_paused(admin: Admin, db: Conn, clock: FakeClock) -> None:
    assert admin.paused() == []
    first = admin.pause(kind="sms", reason="gateway down")
    assert (first.kind, first.shard, first.paused_at, first.paused_by, first.reason) == \
        ("sms", None, T0, "alice", "gateway down")
    clock.advance(MINUTE)
    again = admin.as_actor("bob").pause(kind="sms", reason="still down")
    assert again == first  # idempotent: the first pause stays
    admin.pause(shard="district-3")
    admin.pause(kind="sms", shard="district-4")
    assert [(p.kind, p.shard) for p in admin.paused()] == [(None, "district-3"), ("sms", None), ("sms", "district-4")]
    assert [p.describe() for p in admin.paused()] == ["shard district-3", "kind sms", "kind sms in shard district-4"]
    stored = db.execute("SELECT kind, shard, paused_by, reason FROM finejobs_pauses ORDER BY id").fetchall()
    assert stored == [("sms", None, "alice", "gateway down"), (None, "district-3", "alice", None),
                      ("sms", "district-4", "alice", None)]
    assert admin.resume(kind="sms") is True
    assert admin.resume(kind="sms") is False  # idempotent
    assert admin.resume(shard="district-4") is False  # only the kind in that shard is paused there
    assert [(p.kind, p.shard) for p in admin.paused()] == [(None, "district-3"), ("sms", "district-4")]
    assert [p.shard for p in admin.stats(fresh=True).paused] == ["district-3", "district-4"]
    assert audit_rows(db) == [
        ("alice", "pause", {"kind": "sms", "shard": None}, 1, "gateway down"),
        ("bob", "pause", {"kind": "sms", "shard": None}, 0, "still down"),
        ("alice", "pause", {"kind": None, "shard": "district-3"}, 1, None),
        ("alice", "pause", {"kind": "sms", "shard": "district-4"}, 1, None),
        ("alice", "resume", {"kind": "sms", "shard": None}, 1, None),
    ]


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: a.pause(), "pause or resume what"),
    (lambda a: a.resume(), "pause or resume what"),
    (lambda a: a.pause(kind=""), "kind must not be empty"),
    (lambda a: a.pause(kind="a\x00"), "NUL"),
    (lambda a: a.pause(kind="k" * 201), "kind"),
    (lambda a: a.pause(kind=5), "kind must be a string"),
    (lambda a: a.pause(shard="Bad Shard"), "invalid shard name"),
    (lambda a: a.pause(shard=""), "invalid shard name"),
    (lambda a: a.pause(kind="sms", reason="r" * 9000), "reason"),
    (lambda a: a.pause(kind="sms", reason="\x00"), "NUL"),
    (lambda a: a.resume(shard="-x"), "invalid shard name"),
    (lambda a: a.as_actor(""), "actor must not be empty"),
    (lambda a: a.as_actor("x" * 201), "actor"),
])
def test_bad_pauses_are_refused_and_write_nothing(admin: Admin, db: Conn, call: Any, message: str) -> None:
    admin.pause(kind="kept")
    before = snapshot(db)
    with pytest.raises(InvalidJobOptions, match=message):
        call(admin)
    assert snapshot(db) == before


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: a.jobs(limit=0), "limit must be an integer within 1..500"),
    (lambda a: a.jobs(limit=10**6), "limit must be an integer within 1..500"),
    (lambda a: a.jobs(limit=True), "limit"),
    (lambda a: a.jobs(limit="5"), "limit"),
    (lambda a: a.jobs(cursor="0.1.abc"), "cursor"),
    (lambda a: a.jobs({"state": "failed"}), "filter must be a finejobs.JobFilter"),
    (lambda a: a.jobs(JobFilter(kind="a\x00")), "NUL"),
    (lambda a: a.count(JobFilter(state="nope")), "unknown state"),
    (lambda a: a.retry_matching(JobFilter(error="\x00x")), "NUL"),
    (lambda a: a.retry_matching(None), "filter must be a finejobs.JobFilter"),
    (lambda a: a.delete_matching(JobFilter(), dry_run="yes"), "dry_run must be True or False"),
    (lambda a: a.cancel_matching(JobFilter(), "x" * 9000), "reason"),
    (lambda a: a.cancel(1, "\x00"), "NUL"),
    (lambda a: a.job(0), "job id must be an integer"),
    (lambda a: a.retry(-1), "job id"),
    (lambda a: a.delete("1"), "job id"),
    (lambda a: a.delete(2**63), "job id"),
    (lambda a: a.job(1, database="elsewhere"), "database: 'elsewhere' is not in the shard map"),
    (lambda a: a.audit(limit=0), "limit"),
    (lambda a: a.audit(before=0), "before"),
    (lambda a: a.jobs(JobFilter(database="nope")), "is not in the shard map"),
    (lambda a: Admin(a.queue, actor="\x00"), "NUL"),
    (lambda a: Admin("postgresql://x"), "Admin needs a finejobs.Queue"),
])
def test_bad_input_raises_a_finejobs_error_and_writes_nothing(admin: Admin, db: Conn, call: Any,
                                                              message: str) -> None:
    add(db, Row(state="failed"), Row(state="running"))
    before = snapshot(db)
    with pytest.raises(FinejobsError, match=message):
        call(admin)
    assert snapshot(db) == before


# ---------------------------------------------------------------- stats


def test_stats_by_state_kind_shard_with_lag_and_expiring(admin: Admin, db: Conn, clock: FakeClock) -> None:
    add(db,
        Row(kind="sms", shard="s1", run_at=T0 - 90 * SECOND),  # due for 90 s: s1's lag
        Row(kind="sms", shard="s1", run_at=T0 - 10 * SECOND, priority=5),
        Row(kind="sms", shard="s1", run_at=T0 + MINUTE, expires_at=T0 + 10 * MINUTE),  # scheduled, expiring
        Row(kind="call", shard="s2", run_at=T0 - 5 * SECOND, expires_at=T0 + 14 * MINUTE),  # expiring
        Row(kind="call", shard="s2", run_at=T0 + MINUTE, expires_at=T0 + 16 * MINUTE),  # not within 15 min
        Row(kind="call", shard="s2", run_at=T0 - MINUTE, expires_at=T0 - SECOND),  # overdue: not "expiring"
        Row(kind="call", shard="s3", run_at=T0 + MINUTE),  # nothing due in s3: no lag
        Row(kind="sms", shard="s1", state="running"),
        Row(kind="sms", shard="s1", state="succeeded"), Row(kind="sms", shard="s2", state="succeeded"),
        Row(kind="call", shard="s2", state="failed"), Row(kind="call", shard="s3", state="expired"),
        Row(kind="sms", shard="s3", state="cancelled"))
    admin.pause(shard="s3")
    stats = admin.stats()
    assert stats.by_state == {"scheduled": 3, "available": 4, "running": 1, "succeeded": 2, "failed": 1,
                              "expired": 1, "cancelled": 1}
    assert stats.total == 13 and not stats.capped and stats.at == T0
    assert stats.by_kind == {"sms": {"available": 2, "scheduled": 1, "running": 1, "succeeded": 2, "cancelled": 1},
                             "call": {"available": 2, "scheduled": 2, "failed": 1, "expired": 1}}
    assert stats.by_shard == {"s1": {"available": 2, "scheduled": 1, "running": 1, "succeeded": 1},
                              "s2": {"available": 2, "scheduled": 1, "succeeded": 1, "failed": 1},
                              "s3": {"scheduled": 1, "expired": 1, "cancelled": 1}}
    assert stats.lag_seconds == {"s1": 90.0, "s2": 60.0}
    assert stats.expiring_soon == {"s1": 1, "s2": 1}
    assert [p.shard for p in stats.paused] == ["s3"]
    json.dumps(stats.to_json())
    clock.advance(MINUTE)
    assert admin.stats(fresh=True).lag_seconds == {"s1": 150.0, "s2": 120.0, "s3": 0.0}


def test_stats_lag_sees_every_priority_of_every_shard(admin: Admin, db: Conn) -> None:
    add(db, *(Row(shard=f"s{i % 3}", priority=p, run_at=T0 - (i + 1) * SECOND + p * MINUTE)
              for i in range(12) for p in (-3, 0, 2)))
    expected: dict[str, float] = {}
    for i in range(12):
        for p in (-3, 0, 2):
            age = ((i + 1) * SECOND - p * MINUTE).total_seconds()
            if age >= 0:
                expected[f"s{i % 3}"] = max(expected.get(f"s{i % 3}", 0.0), age)
    assert admin.stats().lag_seconds == expected


def test_stats_are_cached_a_few_seconds(admin: Admin, db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_core, "STATS_TTL", 60.0)  # a slow machine cannot expire it mid-test
    add(db, Row())
    first = admin.stats()
    add(db, Row(), Row(state="failed"))  # behind the API's back
    assert admin.stats() is first  # cached
    assert Admin(admin.queue).stats() is not first  # another Admin has its own cache
    fresh = admin.stats(fresh=True)
    assert fresh.total == 3
    assert admin.stats() is fresh
    admin.retry_matching(JobFilter(state="failed"))  # this Admin's actions drop the cache
    assert admin.stats().by_state["available"] == 3
    add(db, Row())
    monkeypatch.setattr(admin_core, "STATS_TTL", 0.0)
    assert admin.stats().total == 4  # expired at once


def test_stats_and_shards_count_each_state_up_to_a_cap(admin: Admin, db: Conn,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    add(db, *(Row(state="succeeded", shard="s1") for _ in range(5)), Row(state="failed"), Row(run_at=T0 + MINUTE))
    monkeypatch.setattr(admin_core, "STATS_CAP", 3)
    stats = admin.stats(fresh=True)
    assert stats.capped
    assert stats.by_state["succeeded"] == 3 and stats.by_state["failed"] == 1 and stats.by_state["scheduled"] == 1
    assert {s.name: s.counts for s in admin.shards()} == {"s1": {"succeeded": 3},
                                                         "default": {"failed": 1, "scheduled": 1}}


# ---------------------------------------------------------------- workers, shards, audit, JSON


def registry_row(worker_id: str, *, seen_at: datetime, started_at: datetime = T0 - MINUTE) -> dict[str, Any]:
    return {"id": worker_id, "host": "host-1", "pid": 4242, "version": "1.0", "database": "default",
            "shards": ["s1", "s2"] if worker_id.endswith("1") else None, "kinds": ["ok", "sms"], "concurrency": 8,
            "started_at": started_at, "seen_at": seen_at, "in_flight": 2, "counters": {"succeeded": 10},
            "info": {"schedules": ["nightly"]}}


def test_workers_alive_and_gone(admin: Admin, db: Conn, clock: FakeClock) -> None:
    store = admin.queue.store
    store.worker_upsert(values=registry_row("w-gone", seen_at=T0 - 2 * MINUTE, started_at=T0 - 10 * MINUTE))
    store.worker_upsert(values=registry_row("w-1", seen_at=T0 - 5 * SECOND))
    store.worker_upsert(values=registry_row("w-2", seen_at=T0 - 29 * SECOND))
    found = admin.workers()
    assert [(w.id, w.alive) for w in found] == [("w-1", True), ("w-2", True), ("w-gone", False)]
    w1 = found[0]
    assert (w1.host, w1.pid, w1.version, w1.database, w1.shards, w1.kinds, w1.concurrency, w1.in_flight) == \
        ("host-1", 4242, "1.0", "default", ("s1", "s2"), ("ok", "sms"), 8, 2)
    assert w1.counters == {"succeeded": 10} and w1.info == {"schedules": ["nightly"]} and found[1].shards is None
    assert json.loads(json.dumps([w.to_json() for w in found]))[0]["seen_at"] == (T0 - 5 * SECOND).isoformat()
    store.worker_upsert(values=registry_row("w-gone", seen_at=T0))  # it came back
    assert [w.id for w in admin.workers() if w.alive] == ["w-gone", "w-1", "w-2"]
    clock.advance(29 * SECOND)
    assert [w.id for w in admin.workers() if w.alive] == ["w-gone"]
    assert store.worker_prune(before=T0 - SECOND) == 2
    store.worker_delete(worker_id="w-gone")
    assert admin.workers() == []


def test_shards_lists_partitions_and_counts(fresh: Queue) -> None:
    for shard in ("east", "west", "east"):
        fresh.enqueue("ok", {}, shard=shard)
    fresh.store.shard_add(["north", "east"])
    admin = Admin(fresh)
    shards = admin.shards()
    assert [(s.name, s.partition, s.own_partition, s.counts, s.unfinished) for s in shards] == [
        ("east", "finejobs_jobs_east", True, {"available": 2}, 2),
        ("north", "finejobs_jobs_north", True, {}, 0),
        ("west", "finejobs_jobs_other", False, {"available": 1}, 1),
    ]
    assert json.loads(json.dumps([s.to_json() for s in shards]))[0]["database"] == "default"


def test_audit_paging_and_actors(admin: Admin, db: Conn) -> None:
    (failed,) = add(db, Row(state="failed"))
    admin.as_actor("bob").retry(failed.id)
    admin.pause(kind="sms")
    admin.resume(kind="sms")
    entries = admin.audit()
    assert [(e.actor, e.action) for e in entries] == [("alice", "resume"), ("alice", "pause"), ("bob", "retry")]
    assert entries[2].target == {"job": failed.id, "database": "default"} and entries[2].count == 1
    assert entries[0].at == T0
    older = admin.audit(before=entries[0].id, limit=1)
    assert [e.action for e in older] == ["pause"]
    assert json.dumps([e.to_json() for e in entries])


def test_every_result_is_json(admin: Admin, db: Conn) -> None:
    add(db, Row(state="failed", messages=("timeout",)), Row(kind="sms", run_at=T0 + MINUTE))
    admin.queue.store.worker_upsert(values=registry_row("w-1", seen_at=T0))
    admin.pause(kind="sms", reason="why")
    results: list[Any] = [admin.jobs(limit=1), admin.count(), admin.stats(), admin.retry_matching(JobFilter(),
                          dry_run=True), admin.cancel_matching(JobFilter(kind="sms")), *admin.paused(),
                          *admin.workers(), *admin.shards(), *admin.audit()]
    for result in results:
        text = json.dumps(result.to_json())
        assert json.loads(text) == result.to_json()
    page = admin.jobs(limit=1)
    assert page.to_json()["next_cursor"] == page.next_cursor and page.to_json()["jobs"][0]["id"] == 2


# ---------------------------------------------------------------- plans: indexed on a table big enough

_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]

_FILL = """
INSERT INTO finejobs_jobs (kind, shard, payload, state, attempt, errors, created_at, started_at, finished_at, run_at)
SELECT (ARRAY['dosage.alert', 'dosage.alert', 'sms.send', 'report.build', 'sync.patient'])[1 + g %% 5],
       'district-' || (1 + (g / 7) %% 4), jsonb_build_object('n', g), s.state,
       CASE WHEN s.state = 'expired' THEN 0 ELSE 1 END,
       CASE WHEN s.state = 'failed' THEN jsonb_build_array(jsonb_build_object('attempt', 1,
            'at', '2026-01-01T00:00:00Z', 'error', 'E', 'message',
            (ARRAY['timeout', 'HTTP 503', 'invalid phone'])[1 + g %% 3])) ELSE '[]' END,
       t.at, t.at, t.at + interval '1 second', t.at
FROM generate_series(1, %(finished)s) AS g
CROSS JOIN LATERAL (SELECT CASE WHEN g %% 100 < 80 THEN 'succeeded' WHEN g %% 100 < 92 THEN 'failed'
                                WHEN g %% 100 < 97 THEN 'cancelled' ELSE 'expired' END AS state) AS s
CROSS JOIN LATERAL (SELECT %(t0)s - interval '30 days' + g * interval '1 second' AS at) AS t
"""
_FILL_WAITING = """
INSERT INTO finejobs_jobs (kind, shard, created_at, run_at, expires_at)
SELECT (ARRAY['dosage.alert', 'sms.send'])[1 + g %% 2], 'district-' || (1 + (g / 7) %% 4), %(t0)s,
       %(t0)s + (g %% 2 * 2 - 1) * g * interval '1 second',
       CASE WHEN g %% 10 = 0 THEN %(t0)s + g * interval '1 second' END
FROM generate_series(1, %(waiting)s) AS g
"""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def explain(conn: Conn, stmt: sa.TextClause, params: Mapping[str, Any], *, generic: bool) -> list[dict[str, Any]]:
    """The plan nodes of a store statement, prepared as psycopg prepares it and planned generic (as the
    store's engine forces: plan_cache_mode=force_generic_plan) or custom (with the values)."""
    text = str(stmt.compile(dialect=_DIALECT))
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, text).replace("%%", "%")
    conn.execute("DEALLOCATE ALL")
    conn.execute(f"SET plan_cache_mode = {'force_generic_plan' if generic else 'force_custom_plan'}")
    conn.execute(sql.SQL("PREPARE finejobs_plan AS {}").format(sql.SQL(text)))  # type: ignore[arg-type]
    args = sql.SQL(", ").join(sql.Literal(params[name]) for name in order)
    execute = sql.SQL("EXECUTE finejobs_plan({})").format(args) if order else sql.SQL("EXECUTE finejobs_plan")
    row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + execute).fetchone()
    assert row is not None
    return list(_nodes(row[0][0]["Plan"]))


@pytest.fixture
def big(fresh: Queue, empty_database_url: str) -> Iterator[tuple[Queue, Conn]]:
    """120,000 finished and 12,000 waiting jobs over 5 kinds and 4 shards (one of them with a partition of its
    own), vacuumed and analysed, as a long-lived table is."""
    fresh.store.shard_add(["district-4"])
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True, prepare_threshold=None) as conn:
        conn.execute(_FILL, {"finished": 120_000, "t0": T0})
        conn.execute(_FILL_WAITING, {"waiting": 12_000, "t0": T0})
        conn.execute("VACUUM (ANALYZE) finejobs_jobs")
        yield fresh, conn


def statements() -> Iterator[tuple[str, sa.TextClause, dict[str, Any]]]:
    """The main statements of the operations API, with the parameters the API would give them."""
    now = T0
    pages = {"first page": JobFilter(), "failed": JobFilter(state="failed"), "kind": JobFilter(kind="sms.send"),
             "shard": JobFilter(shard="district-2"), "own-partition shard": JobFilter(shard="district-4"),
             "error": JobFilter(error="invalid phone"), "failed + error": JobFilter(state="failed", error="phone"),
             "scheduled": JobFilter(state="scheduled"), "running": JobFilter(state="running"),
             "succeeded + kind + shard": JobFilter(state="succeeded", kind="report.build", shard="district-3"),
             "finished range": JobFilter(finished_after=T0 - timedelta(days=3)),
             "schedule": JobFilter(schedule="nightly")}
    for name, filt in pages.items():
        yield (f"page: {name}", *ops.page_statement(filt, now=now, before=None, limit=50,
                                                    scan=admin_module.PAGE_SCAN, schedule_id=7))
        yield (f"deep page: {name}", *ops.page_statement(filt, now=now, before=60_000, limit=50,
                                                         scan=admin_module.PAGE_SCAN, schedule_id=7))
        cap = admin_module.COUNT_CAP if filt.error is None else admin_module.ERROR_COUNT_CAP
        for seek in (True, False):
            yield (f"count: {name} (shard seek {seek})", *ops.count_statement(filt, now=now, cap=cap, schedule_id=7,
                                                                               shard_seek=seek))
        for action in ("retry", "delete"):
            if filt.state is None or filt.state.value in ops.ACTION_STATES[action]:
                yield (f"dry run {action}: {name}", *ops.count_statement(
                    filt, now=now, cap=cap, schedule_id=7, states=ops.ACTION_STATES[action], shard_seek=False))
                yield (f"bulk {action}: {name}", *ops.bulk_pick_statement(
                    action, filt, now=now, after=50_000, limit=admin_module.BULK_BATCH, scan=admin_module.BULK_SCAN,
                    schedule_id=7))
    for state in ops.STORED_STATES:
        yield f"stats: {state}", ops.state_counts_statement(state, admin_module.STATS_CAP + 1), {"now": now}
    yield "stats: lag", ops.LAG_STATEMENT, {"now": now}
    yield "schedule runs", schedule_store._SCHEDULE_RUNS, {"schedule_id": 7, "limit": 20}
    for state in ("succeeded", "failed"):  # the console's throughput and lag charts
        yield (f"activity ({state})", ops.activity_statement(state, admin_module.ACTIVITY_CAP),
               {"now": now, "since": now - timedelta(hours=1)})
    yield ("stats: expiring", ops.expiring_statement(admin_module.COUNT_CAP),
           {"now": now, "until": now + admin_module.EXPIRING_WITHIN})


def test_the_main_statements_use_indexes_not_seq_scans(big: tuple[Queue, Conn]) -> None:
    _, conn = big
    seen = set()
    for name, stmt, params in statements():
        for generic in (True, False):
            nodes = explain(conn, stmt, params, generic=generic)
            kinds = [(n["Node Type"], n.get("Relation Name", "")) for n in nodes]
            assert not [k for k in kinds if k[0] == "Seq Scan"], (name, generic, kinds)
            scans = {n["Node Type"] for n in nodes if n.get("Relation Name", "").startswith("finejobs_jobs")}
            assert scans and scans <= {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, (name, generic, kinds)
            indexes = {n["Index Name"] for n in nodes if n.get("Index Name")}
            seen |= indexes
            by_state = re.search(r"(failed|scheduled|succeeded|expired|cancelled|available)$", name) or \
                name.startswith(("page: failed", "deep page: failed", "count: failed", "page: succeeded"))
            if by_state:  # the state index finds the rows of a state, not the primary key walking past others
                assert "finejobs_jobs_other_state_id_idx" in indexes, (name, generic, kinds, indexes)
    # the state index of migration 0006 does the state pages and counts, in the default partition and in a
    # shard's own (created after the migration, by shards add)
    assert {"finejobs_jobs_other_state_id_idx", "finejobs_jobs_other_pkey"} <= seen
    nodes = explain(conn, *ops.page_statement(JobFilter(state="failed", shard="district-4"), now=T0, before=None,
                                              limit=50, scan=admin_module.PAGE_SCAN), generic=True)
    first = next(n for n in nodes if n.get("Relation Name", "").startswith("finejobs_jobs_district_4"))
    assert first["Node Type"] == "Index Only Scan" and "_state_id_" in first["Index Name"], first


def test_the_api_answers_on_the_big_table(big: tuple[Queue, Conn]) -> None:
    """The same statements through the API (their results, not their speed: bench/admin.py measures that)."""
    queue, _ = big
    admin = Admin(queue)
    failed = admin.jobs(JobFilter(state="failed"), limit=50)
    assert len(failed.jobs) == 50 and all(j.state is JobState.FAILED for j in failed.jobs)
    deep = admin.jobs(JobFilter(state="failed"), cursor=failed.next_cursor, limit=50)
    assert deep.jobs[0].id < failed.jobs[-1].id
    assert admin.count(JobFilter(state="failed")) == Count(14_400, False)
    assert admin.count() == Count(admin_module.COUNT_CAP, True)
    stats = admin.stats()
    assert stats.capped and stats.by_state["succeeded"] == admin_module.STATS_CAP
    assert stats.by_state["failed"] == 14_400 and stats.by_state["scheduled"] + stats.by_state["available"] == 12_000
    assert set(stats.lag_seconds) == {f"district-{i}" for i in range(1, 5)}
