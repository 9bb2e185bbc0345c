"""Groups on a real PostgreSQL: counters moved by every path that changes a member, completion and its
callbacks exactly once, sealing, cancelling, progress, refusals that write nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pydantic
import pytest

import finejobs
from finejobs import Admin, Callback, Group, GroupProgress, JobFilter, JobKind, Queue, Retry
from finejobs.errors import FinejobsError, GroupNotFound, InvalidJobOptions, PayloadError, UnknownKindError
from finejobs.groups import GroupTimeout
from finejobs.testing import FakeClock

DB = psycopg.Connection[tuple[Any, ...]]
ONCE = Retry(max_attempts=1)


@pytest.fixture
def kinds(queue: Queue) -> dict[str, JobKind[Any, Any]]:
    done: list[int] = []

    @queue.job("item", retry=ONCE)
    def item(payload: dict[str, Any]) -> None:
        if payload.get("fail"):
            raise RuntimeError("this item fails")
        done.append(payload["n"])

    @queue.job("report")
    def report(payload: dict[str, Any]) -> None:
        return None

    @queue.job("strict")
    def strict(payload: Strict) -> None:
        return None

    return {"item": item, "report": report, "strict": strict}


class Strict(pydantic.BaseModel):
    run: str


def drain(queue: Queue, rounds: int = 20) -> None:
    worker = queue.worker(listen=False, concurrency=50)
    assert isinstance(worker, finejobs.Worker)
    for _ in range(rounds):
        if not worker.work_once():
            return


def callbacks(db: DB) -> list[tuple[str, str]]:
    return [(k, u) for k, u in db.execute(
        "SELECT kind, unique_key FROM finejobs_jobs WHERE unique_key LIKE 'finejobs:group:%' ORDER BY id")]


def test_a_group_counts_its_members_and_fires_complete_and_success_once(
        queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB) -> None:
    with queue.group("renewals-2026-12-07", on_complete="report",
                     on_success=(kinds["report"], {"run": "ok"}), on_failure="report") as group:
        group.enqueue_many("item", [{"n": i} for i in range(30)])
        group.enqueue(kinds["item"], {"n": 30})
        assert group.progress().state == "open"
    progress = group.progress()
    assert (progress.state, progress.total, progress.waiting, progress.done) == ("sealed", 31, 31, 0)
    drain(queue)
    progress = group.progress()
    assert (progress.state, progress.succeeded, progress.failed, progress.done) == ("succeeded", 31, 0, 31)
    assert progress.finished and progress.percent == 100.0
    gid = group.id
    assert callbacks(db) == [("report", f"finejobs:group:{gid}:complete"), ("report", f"finejobs:group:{gid}:success")]
    payloads = [p for (p,) in db.execute("SELECT payload FROM finejobs_jobs WHERE kind = 'report' ORDER BY id")]
    assert payloads == [{"group": "renewals-2026-12-07"}, {"run": "ok"}]
    # Sealing again, or the callbacks' own completion, fires nothing more.
    group.seal()
    drain(queue)
    assert len(callbacks(db)) == 2
    assert db.execute("SELECT count(*) FROM finejobs_jobs WHERE kind = 'report' AND state = 'succeeded'").fetchone() \
        == (2,)


def test_a_failed_member_makes_the_group_fail_and_a_retry_moves_the_counts_back_without_firing_again(
        queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB) -> None:
    group = queue.group("with-failure", on_success="report", on_failure=Callback("report", {"why": "failed"}))
    group.enqueue_many("item", [{"n": 1}, {"n": 2, "fail": True}])
    group.seal()
    drain(queue)
    progress = group.progress()
    assert (progress.state, progress.succeeded, progress.failed) == ("failed", 1, 1)
    assert callbacks(db) == [("report", f"finejobs:group:{group.id}:failure")]
    failed = queue.jobs(state="failed", kind="item")[0]
    queue.retry(failed.id)
    after = group.progress()
    assert (after.failed, after.waiting, after.state) == (0, 1, "failed")  # the outcome stays as it finished
    drain(queue)
    assert group.progress().failed == 1
    assert len(callbacks(db)) == 1


def test_sealing_a_group_whose_members_are_all_done_finishes_it_at_once(
        queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB) -> None:
    group = queue.group("done-before-seal", on_complete="report")
    group.enqueue_many("item", [{"n": i} for i in range(3)])
    drain(queue)
    assert group.progress().state == "open"  # more may join
    assert callbacks(db) == []
    assert group.seal().state == "succeeded"
    assert callbacks(db) == [("report", f"finejobs:group:{group.id}:complete")]


def test_an_empty_sealed_group_succeeds_at_once(queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB) -> None:
    assert queue.group("empty", on_success="report").seal().state == "succeeded"
    assert len(callbacks(db)) == 1


def test_a_sealed_group_refuses_new_members_and_writes_nothing(
        queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB) -> None:
    group = queue.group("sealed")
    group.enqueue("item", {"n": 1})
    group.seal()
    with pytest.raises(FinejobsError, match="sealed"):
        group.enqueue_many("item", [{"n": 2}, {"n": 3}])
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (1,)
    assert group.progress().total == 1


def test_transactional_enqueue_into_a_group_counts_only_what_commits(
        queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB, clean_db: str) -> None:
    group = queue.group("in-a-transaction")
    with psycopg.connect(clean_db) as conn:
        group.enqueue_many("item", [{"n": 1}, {"n": 2}], conn=conn)
        conn.rollback()
        group.enqueue("item", {"n": 3}, conn=conn)
        conn.commit()
    assert group.progress().total == 1
    assert db.execute("SELECT count(*) FROM finejobs_jobs WHERE group_id = %s", (group.id,)).fetchone() == (1,)


def test_a_job_whose_unique_key_is_held_does_not_join(queue: Queue, kinds: dict[str, JobKind[Any, Any]]) -> None:
    held = kinds["item"].enqueue({"n": 1}, unique_key="policy-1")
    group = queue.group("dedup")
    again = group.enqueue("item", {"n": 1}, unique_key="policy-1")
    assert again.id == held.id and again.group_id is None
    assert group.progress().total == 0


def test_cancel_ends_waiting_members_and_fires_failure(
        queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB) -> None:
    group = queue.group("to-cancel", on_complete="report", on_failure="report", on_success="report")
    group.enqueue_many("item", [{"n": i} for i in range(5)])
    assert group.cancel("operator said so") == 5
    progress = group.progress()
    assert (progress.state, progress.cancelled, progress.total) == ("cancelled", 5, 5)
    assert [u.rsplit(":", 1)[1] for _, u in callbacks(db)] == ["complete", "failure"]
    with pytest.raises(FinejobsError, match="sealed"):
        group.enqueue("item", {"n": 9})


def test_a_finished_group_cannot_be_cancelled(queue: Queue, kinds: dict[str, JobKind[Any, Any]]) -> None:
    group = queue.group("finished")
    group.seal()
    with pytest.raises(FinejobsError, match="has finished"):
        group.cancel()
    assert group.progress().state == "succeeded"


def test_expiry_lease_rescue_bulk_cancel_and_delete_move_the_counters(
        queue: Queue, clock: FakeClock, kinds: dict[str, JobKind[Any, Any]], db: DB) -> None:
    group = queue.group("paths", on_complete="report")
    expiring = group.enqueue("item", {"n": 1}, expires_at=clock() + timedelta(seconds=5))
    lost = group.enqueue("item", {"n": 2})
    by_filter = group.enqueue_many("item", [{"n": 3}, {"n": 4}], shard="bulk")
    deleted = group.enqueue("item", {"n": 5}, shard="gone")
    group.seal()
    worker = queue.worker(listen=False, shards=["default"], lease=timedelta(seconds=10))
    assert isinstance(worker, finejobs.Worker)
    claimed = worker._claim(1)  # claimed by a worker that then dies: its lease runs out (ONCE: no retry)
    assert [j.id for j in claimed] == [expiring.id]
    clock.advance(timedelta(seconds=11))
    assert worker.maintenance.run_once(clock()).rescued == 1
    assert queue.get(lost.id).state.value == "available"
    queue.cancel(lost.id)
    admin = Admin(queue)
    assert admin.cancel_matching(JobFilter(shard="bulk"), reason="bulk").changed == len(by_filter)
    assert admin.delete(deleted.id) is not None
    progress = group.progress()
    assert (progress.total, progress.failed, progress.cancelled, progress.state) == (4, 1, 3, "failed")
    assert len(callbacks(db)) == 1


def test_expired_waiting_members_are_counted(
        queue: Queue, clock: FakeClock, kinds: dict[str, JobKind[Any, Any]]) -> None:
    group = queue.group("expiring")
    group.enqueue_many("item", [{"n": 1}, {"n": 2}], expires_at=clock() + timedelta(seconds=5))
    group.seal()
    clock.advance(timedelta(seconds=6))
    worker = queue.worker(listen=False)
    assert isinstance(worker, finejobs.Worker)
    assert worker.maintenance.run_once(clock()).expired == 2
    assert (group.progress().expired, group.progress().state) == (2, "failed")


def test_progress_gives_a_rate_and_an_eta(queue: Queue, clock: FakeClock, kinds: dict[str, JobKind[Any, Any]]) -> None:
    group = queue.group("timed")
    group.enqueue_many("item", [{"n": i} for i in range(10)])
    worker = queue.worker(listen=False, concurrency=1)
    assert isinstance(worker, finejobs.Worker)
    for _ in range(5):
        worker.work_once()
        clock.advance(timedelta(seconds=2))
    progress = group.progress()
    assert progress.done == 5
    assert progress.per_second == pytest.approx(0.5)  # 4 more done over 8 s after the first
    assert progress.eta_seconds == pytest.approx(10.0)
    assert GroupProgress.to_json(progress)["eta_seconds"] == pytest.approx(10.0)


def test_wait_returns_once_finished_and_times_out_before(queue: Queue, kinds: dict[str, JobKind[Any, Any]]) -> None:
    group = queue.group("waited")
    group.enqueue("item", {"n": 1})
    group.seal()
    with pytest.raises(GroupTimeout, match="did not finish"):
        group.wait(timeout=0.05, poll=0.01)
    drain(queue)
    assert group.wait(timeout=1).state == "succeeded"


def test_a_group_is_found_by_name_and_keeps_its_callbacks(queue: Queue, kinds: dict[str, JobKind[Any, Any]]) -> None:
    made = queue.group("found", on_complete="report")
    again = queue.group("found")  # get or create: the callbacks it was made with stay
    assert again.id == made.id and queue.find_group("found").id == made.id
    assert again.progress().callbacks == ("complete",)
    with pytest.raises(GroupNotFound):
        queue.find_group("nope")


@pytest.mark.parametrize("options, error", [
    ({"on_complete": "no-such-kind"}, UnknownKindError),
    ({"on_success": ("report", "not an object")}, PayloadError),
    ({"on_failure": ("report", {}, "extra")}, InvalidJobOptions),
    ({"on_failure": 42}, InvalidJobOptions),
    ({"database": "elsewhere"}, InvalidJobOptions),
])
def test_bad_callbacks_are_refused_before_the_group_is_made(
        queue: Queue, kinds: dict[str, JobKind[Any, Any]], db: DB, options: dict[str, Any],
        error: type[Exception]) -> None:
    with pytest.raises(error):
        queue.group("bad", **options)
    assert db.execute("SELECT count(*) FROM finejobs_groups").fetchone() == (0,)


def test_a_group_name_must_be_sane(queue: Queue) -> None:
    with pytest.raises(InvalidJobOptions):
        queue.group("")
    with pytest.raises(InvalidJobOptions):
        queue.group("x" * 201)


def test_group_handle_is_a_group(queue: Queue, kinds: dict[str, JobKind[Any, Any]]) -> None:
    assert isinstance(queue.group("typed"), Group)


def test_groups_are_listed_by_state_however_old(queue: Queue, kinds: dict[str, JobKind[Any, Any]]) -> None:
    """The state filter is the database's (finejobs.store.groups._STATE), the same as the progress says, and
    reaches past the newest groups."""
    failed = queue.group("g-failed")
    failed.enqueue("item", {"n": 1, "fail": True})
    failed.seal()
    drain(queue)
    queue.group("g-succeeded").seal()
    cancelled = queue.group("g-cancelled")
    cancelled.enqueue("item", {"n": 2})
    cancelled.cancel()
    cancelling = queue.group("g-cancelling")
    cancelling.enqueue("item", {"n": 3})
    claimed = queue.store.job_claim(owner="w", shard="default", kinds=["item"], limit=1, lease=timedelta(minutes=5),
                                    now=queue.clock())
    assert len(claimed) == 1
    cancelling.cancel()  # its running member finishes as it will: the group is cancelling meanwhile
    sealed = queue.group("g-sealed")
    sealed.enqueue("item", {"n": 4})
    sealed.seal()
    for i in range(210):  # newer open groups, more than one page of them
        queue.group(f"g-open-{i:03d}")
    admin = Admin(queue)
    for state, expected in (("failed", ["g-failed"]), ("succeeded", ["g-succeeded"]), ("cancelled", ["g-cancelled"]),
                            ("cancelling", ["g-cancelling"]), ("sealed", ["g-sealed"])):
        found = admin.groups.list(state=state)
        assert [g.name for g in found] == expected, (state, found)
        assert all(g.state == state for g in found)
    opened = admin.groups.list(state="open", limit=200)
    assert len(opened) == 200 and {g.state for g in opened} == {"open"}
    assert opened[0].name == "g-open-209"
