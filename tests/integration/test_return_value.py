"""What a handler returns is kept as the job's return_value (migration 0008): JSON that jsonb can keep,
written with the success by the completer; None, finejobs.Idle and values JSON cannot keep leave it NULL, and
a batch without return values runs the completion statement it ran before."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest
from psycopg.types.string import TextLoader

from finejobs import Idle, JobState, Queue
from finejobs.jobs import Outcome
from finejobs.limits import MAX_RETURN_VALUE_BYTES
from finejobs.outcomes import return_json
from finejobs.store import hot, libpq_url

DB = psycopg.Connection[tuple[Any, ...]]


def run_returning(queue: Queue, value: Any) -> Any:
    @queue.job("returns")
    def returns(payload: dict[str, Any]) -> Any:
        return value

    job = returns.enqueue({})
    queue.worker(listen=False).work_once()
    done = queue.get(job.id)
    assert done.state is JobState.SUCCEEDED
    return done


@pytest.mark.parametrize("value", [{"renewed": 3, "ids": [1, 2, 3]}, [1, "two", None], "text", 42, 1.5, True,
                                   {"nested": {"deep": [{"x": 1e20}]}}])
def test_a_json_return_value_is_kept(queue: Queue, value: Any) -> None:
    assert run_returning(queue, value).return_value == value


def test_a_tuple_comes_back_as_a_list(queue: Queue) -> None:
    assert run_returning(queue, (1, 2)).return_value == [1, 2]


@pytest.mark.parametrize("value", [None, Idle])
def test_nothing_is_kept_for_none_and_idle(queue: Queue, db: DB, value: Any) -> None:
    job = run_returning(queue, value)
    assert job.return_value is None
    assert db.execute("SELECT return_value IS NULL FROM finejobs_jobs WHERE id = %s", (job.id,)).fetchone() == (True,)


@pytest.mark.parametrize("value", [object(), "nul \x00 here", {"x": math.nan}, {1: "int key"}, "\ud800",
                                   "x" * (MAX_RETURN_VALUE_BYTES + 1)])
def test_a_value_json_cannot_keep_is_dropped_and_the_job_still_succeeds(queue: Queue, value: Any) -> None:
    assert return_json(value) is None
    assert run_returning(queue, value).return_value is None


def test_a_batch_mixing_outcomes_writes_each(queue: Queue, db: DB) -> None:
    """One completion statement for outcomes with and without return values, in one shard and across many."""
    @queue.job("plain")
    def plain(payload: dict[str, Any]) -> None:
        pass

    jobs = [plain.enqueue({}, shard=f"s{i % 4}") for i in range(8)]
    worker = queue.worker(listen=False, worker_id="w-batch")
    claimed = worker._claim(8)
    assert len(claimed) == 8
    outcomes = [Outcome(j.id, j.attempt, "succeeded", finished_at=queue.clock(), claims=j.claims, shard=j.shard,
                        return_value=None if i % 2 else f'{{"n": {i}}}') for i, j in enumerate(claimed)]
    assert queue.store.job_complete_many(outcomes, owner="w-batch") == {j.id for j in jobs}
    kept = dict(db.execute("SELECT id, return_value FROM finejobs_jobs").fetchall())
    assert kept == {j.id: (None if i % 2 else {"n": i}) for i, j in enumerate(claimed)}


def test_plain_completions_run_the_statement_without_return_values() -> None:
    for in_shard in (True, False):
        assert "return_value" not in hot._complete_sql(in_shard=in_shard).text
        assert "group_id" not in hot._complete_sql(in_shard=in_shard).text
        assert "return_value" in hot._complete_sql(in_shard=in_shard, returns=True).text
        assert "group_id" in hot._complete_sql(in_shard=in_shard, grouped=True).text


def test_a_late_outcome_writes_no_return_value(queue: Queue, db: DB) -> None:
    @queue.job("late")
    def late(payload: dict[str, Any]) -> None:
        pass

    job = late.enqueue({})
    claimed = queue.worker(listen=False, worker_id="w-late")._claim(1)[0]
    queue.cancel(job.id)
    outcome = Outcome(claimed.id, claimed.attempt, "succeeded", finished_at=queue.clock(), claims=claimed.claims,
                      shard=claimed.shard, return_value='"too late"')
    assert queue.store.job_complete_many([outcome], owner="w-late") == set()
    assert db.execute("SELECT state, return_value FROM finejobs_jobs").fetchone() == ("cancelled", None)


def test_enqueue_on_a_connection_with_other_loaders_reads_jobs_back_as_finejobs_does(queue: Queue,
                                                                                   clean_db: str) -> None:
    """A caller's psycopg connection may load jsonb as text (Django's do): the job held by a unique key comes
    back with its payload a dict all the same, and the connection keeps its own loaders."""
    @queue.job("keyed")
    def keyed(payload: dict[str, Any]) -> None:
        pass

    first = keyed.enqueue({"n": 1}, unique_key="k")
    with psycopg.connect(libpq_url(clean_db)) as conn:
        conn.adapters.register_loader("jsonb", TextLoader)
        again = keyed.enqueue({"n": 2}, unique_key="k", conn=conn)
        assert conn.execute("SELECT '{\"a\": 1}'::jsonb").fetchone() == ('{"a": 1}',)
    assert again.id == first.id
    assert again.payload == {"n": 1}
    assert again.defect is None
