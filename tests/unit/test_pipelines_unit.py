"""Pipeline declarations and progress, without a database: bad options are refused before anything is
registered, a run's snapshot holds what advancing needs, and progress renders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from finejobs import InvalidJobOptions, JobContext, Queue, Retry
from finejobs.pipeline_engine import StepContext, _Emitter, _is_final
from finejobs.pipeline_info import PipelineInfo
from finejobs.pipelines import declared, pipeline
from finejobs.store.pipelines import PipelineRow, StepRow

T = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def q() -> Queue:
    return Queue("postgresql://nobody@127.0.0.1:1/never")  # nothing connects in these tests


class Params(pydantic.BaseModel):
    n: int


def test_bad_declarations_are_refused_and_register_nothing(q: Queue) -> None:
    with pytest.raises(InvalidJobOptions, match="chunk_size"):
        pipeline(q, "a", chunk_size=0)
    with pytest.raises(InvalidJobOptions, match="chunk_size"):
        pipeline(q, "a", chunk_size=100_001)
    with pytest.raises(InvalidJobOptions, match="unknown pipeline option"):
        pipeline(q, "a", chunk=3)
    with pytest.raises(InvalidJobOptions, match="on_chunk_failure"):
        pipeline(q, "a", on_chunk_failure="ignore")
    with pytest.raises(InvalidJobOptions, match="shard"):
        pipeline(q, "a", shard="Bad Shard")
    p = pipeline(q, "a")
    with pytest.raises(InvalidJobOptions, match="already declared"):
        pipeline(q, "a")
    with pytest.raises(InvalidJobOptions, match="unknown step option"):
        p.step("s", gate=False)
    with pytest.raises(InvalidJobOptions, match="on_failure"):
        p.step("s", on_failure="retry")
    with pytest.raises(InvalidJobOptions, match="gated"):
        p.step("s", gated="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="retry"):
        p.step("s", retry=3)  # type: ignore[arg-type]

    @p.step("s")
    def s(params: dict[str, Any]) -> None:
        pass

    with pytest.raises(InvalidJobOptions, match="already has a step named 's'"):
        p.step("s")
    with pytest.raises(InvalidJobOptions, match="async"):
        @p.step("t")
        async def t(items: list[Any]) -> None:
            pass

    @p.reduce()
    def r(outputs: Any) -> None:
        pass

    with pytest.raises(InvalidJobOptions, match="already has a reduction"):
        p.reduce("again")
    with pytest.raises(InvalidJobOptions, match="unknown reduce option"):
        p.reduce("x", gated=False)
    assert sorted(q.kinds) == ["a.reduce", "a.s"]
    assert list(declared(q)) == ["a"]


def test_the_snapshot_holds_what_advancing_needs(q: Queue) -> None:
    p = pipeline(q, "export", chunk_size=10, on_chunk_failure="skip", priority=2)

    @p.step("fetch")
    def fetch(params: Params, ctx: StepContext) -> None:
        pass

    @p.step("expand", gated=False, retry=Retry(max_attempts=7), on_failure="fail", chunk_size=3)
    def expand(items: list[Any], ctx: StepContext) -> None:
        pass

    @p.reduce("report")
    def report(outputs: Any, ctx: StepContext) -> None:
        pass

    assert p.snapshot() == [
        {"name": "fetch", "kind": "export.fetch", "gated": True, "on_failure": "skip", "max_attempts": 3,
         "priority": 2, "reduce": False},
        {"name": "expand", "kind": "export.expand", "gated": False, "on_failure": "fail", "max_attempts": 7,
         "priority": 2, "reduce": False},
        {"name": "report", "kind": "export.report", "gated": True, "on_failure": "fail", "max_attempts": 3,
         "priority": 2, "reduce": True},
    ]
    assert p.steps[0].model is Params and p.steps[1].model is None and p.steps[1].chunk_size == 3
    assert q.kinds["export.expand"].retry.max_attempts == 7


def test_the_reduction_and_the_last_step_cannot_emit() -> None:
    ctx = StepContext(job=None, worker_id="w", pipeline_name="p", step_name="r")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobOptions, match="cannot emit: return its result"):
        ctx.emit([1])
    last = _Emitter(None, pipeline_id=1, target=None, job=None, chunk_size=2, clock=lambda: T,  # type: ignore[arg-type]
                    where="p.last")
    with pytest.raises(InvalidJobOptions, match="no reduction"):
        last.emit([1])


def test_which_errors_end_a_job(q: Queue) -> None:
    from finejobs import Cancel, Snooze
    from finejobs.jobs import Job, JobState

    job = Job(id=1, kind="k", shard="default", payload={}, state=JobState.RUNNING, priority=0, run_at=T,
              expires_at=None, attempt=1, max_attempts=2, unique_key=None, lease_owner="w", lease_expires_at=None,
              errors=(), created_at=T, started_at=T, finished_at=None)
    retry = Retry(max_attempts=2)
    assert not _is_final(RuntimeError("x"), job, retry, T)
    assert _is_final(RuntimeError("x"), Job(**{**job.__dict__, "attempt": 2}), retry, T)
    assert _is_final(Cancel("no"), job, retry, T)
    assert not _is_final(Snooze(timedelta(seconds=1)), Job(**{**job.__dict__, "attempt": 2}), retry, T)
    assert _is_final(ValueError("x"), job, Retry(max_attempts=2, on=(KeyError,)), T)
    assert isinstance(JobContext(job, "w"), JobContext)


def test_progress_states_and_json() -> None:
    run = PipelineRow(id=3, name="export", params={"n": 1}, shard="default", state="running", steps=[],
                      reduce_job=None, result=None, error=None, created_at=T, finished_at=None)

    def step(i: int, name: str, **values: Any) -> StepRow:
        base: dict[str, Any] = {"pipeline_id": 3, "step": i, "name": name, "kind": f"export.{name}", "gated": True,
                                "reduce": False, "closed": False, "chunks_total": 0, "chunks_done": 0,
                                "chunks_failed": 0, "chunks_skipped": 0, "items_total": 0, "items_done": 0,
                                "items_failed": 0, "items_skipped": 0, "started_at": None, "finished_at": None}
        return StepRow(**{**base, **values})

    rows = [step(0, "fetch", closed=True, chunks_total=1, chunks_done=1, items_total=1, items_done=1, finished_at=T),
            step(1, "expand", closed=True, chunks_total=4, chunks_done=2, items_total=40, items_done=20, started_at=T),
            step(2, "reduce", reduce=True)]
    info = PipelineInfo.from_rows(run, rows)
    assert [s.state for s in info.steps] == ["done", "running", "waiting"]
    assert info.step("expand").items_done == 20 and not info.finished
    data = info.to_json()
    assert data["steps"][0]["finished_at"] == T.isoformat() and data["steps"][2]["started_at"] is None
    assert "expand" in info.table() and "2/4" in info.table()
    stopped = PipelineInfo.from_rows(PipelineRow(**{**run.__dict__, "state": "cancelled", "finished_at": T}), rows)
    assert [s.state for s in stopped.steps] == ["done", "stopped", "stopped"] and stopped.finished


class _FakeStore:
    def __init__(self) -> None:
        self.writes: list[list[tuple[str, int]]] = []

    def chunk_insert_pending(self, **args: Any) -> list[int]:
        self.writes.append(list(args["chunks"]))
        return []


def test_the_emitter_fills_chunks_across_calls_and_writes_small_chunks_several_at_a_time() -> None:
    from finejobs import PayloadError
    from finejobs.jobs import Job, JobState
    from finejobs.pipeline_engine import WRITE_ITEMS

    job = Job(id=9, kind="k", shard="default", payload={}, state=JobState.RUNNING, priority=0, run_at=T,
              expires_at=None, attempt=1, max_attempts=2, unique_key=None, lease_owner="w", lease_expires_at=None,
              errors=(), created_at=T, started_at=T, finished_at=None, claims=4)
    store = _FakeStore()
    emitter = _Emitter(store, pipeline_id=1, target=1, job=job, chunk_size=3, clock=lambda: T,  # type: ignore[arg-type]
                       where="p.s")
    emitter.emit([1, 2])
    emitter.emit(x for x in (3, 4))
    assert store.writes == [] and emitter.buffered == 3, "small chunks wait to be written together"
    with pytest.raises(PayloadError, match="emitted item 1"):
        emitter.emit([5, float("nan")])  # a list is checked whole: nothing of it is taken
    emitter.flush()
    assert store.writes == [[("[1,2,3]", 3), ("[4]", 1)]]
    big = _Emitter(store, pipeline_id=1, target=1, job=job, chunk_size=1, clock=lambda: T,  # type: ignore[arg-type]
                   where="p.s")
    big.emit(range(WRITE_ITEMS + 1))
    assert len(store.writes) == 2 and len(store.writes[1]) == WRITE_ITEMS
    big.flush()
    assert store.writes[2] == [(f"[{WRITE_ITEMS}]", 1)] and big.items == WRITE_ITEMS + 1
