"""Step pipelines: a run of steps over work chunks, each chunk one ordinary job, with an optional reduction.

```python
export = queue.pipeline("fhir-export", chunk_size=1000)          # or finejobs.pipelines.pipeline(queue, ...)

@export.step("fetch-ids")                                         # the first step takes the run's params
def fetch_ids(params: ExportParams, ctx: finejobs.StepContext) -> None:
    ctx.emit(range(10_000))                                       # written as chunks of chunk_size

@export.step("expand", gated=False, retry=finejobs.Retry(max_attempts=5))   # streaming: no gate
def expand(ids: list[int], ctx: finejobs.StepContext) -> None: ...

@export.reduce()                                                  # sees every output of the last step, once
def report(outputs: Iterator[Any], ctx: finejobs.StepContext) -> dict[str, int]: ...

run = export.start(ExportParams(...)); run.wait(timeout=60).result
```
Each step is a job kind (``<pipeline>.<step>``) on the queue, so any worker of the app runs pipelines. How a
run advances, and what is guaranteed: finejobs.pipeline_engine and docs/pipelines.md.
"""

from __future__ import annotations

import inspect
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic

from finejobs import pipeline_engine as engine
from finejobs.errors import InvalidJobOptions, PipelineNotFound
from finejobs.jobs import JobContext
from finejobs.kinds import JobKind, _payload_model
from finejobs.limits import check_int, check_text
from finejobs.payloads import encode
from finejobs.pipeline_engine import StepContext
from finejobs.pipeline_info import PipelineInfo
from finejobs.retry import Retry
from finejobs.sharding import DEFAULT_SHARD, validate_shard_name
from finejobs.store import JobStore, UserConnection

if TYPE_CHECKING:
    from finejobs.queue import Queue

F = TypeVar("F", bound=Callable[..., Any])

MAX_CHUNK_SIZE = 100_000  # items per chunk at most
FAILURE_POLICIES = ("fail", "skip")
_NAME_CHARS = 100

_declared: weakref.WeakKeyDictionary[Queue, dict[str, Pipeline]] = weakref.WeakKeyDictionary()


def pipeline(queue: Queue, name: str, *, chunk_size: int = 1000, shard: str | None = None,
             on_chunk_failure: str = "fail", priority: int = 0, **unknown: Any) -> Pipeline:
    """Declare a pipeline on ``queue`` (what ``queue.pipeline(name, ...)`` does).

    ``chunk_size``: items per emitted chunk (1 .. MAX_CHUNK_SIZE); ``shard``: the shard of every job of its runs
    (its runs live in the database holding that shard); ``on_chunk_failure``: "fail" (a chunk that exhausts its
    attempts fails the run) or "skip" (it is recorded as skipped, its items counted, and the run goes on);
    ``priority``: of its jobs."""
    if unknown:
        raise InvalidJobOptions(f"unknown pipeline option(s) {', '.join(sorted(map(repr, unknown)))}: allowed are "
                                "chunk_size, shard, on_chunk_failure, priority")
    made = Pipeline(queue, name, chunk_size=chunk_size, shard=shard, on_chunk_failure=on_chunk_failure,
                    priority=priority)
    known = _declared.setdefault(queue, {})
    if name in known:
        raise InvalidJobOptions(f"pipeline {name!r} is already declared")
    known[name] = made
    return made


def declared(queue: Queue) -> dict[str, Pipeline]:
    """The pipelines declared on ``queue``, by name."""
    return dict(_declared.get(queue, {}))


@dataclass(frozen=True)
class Step:
    """A declared step (or the reduction): its function and options, and the job kind that runs it."""

    index: int
    name: str
    kind: str
    fn: Callable[..., Any]
    gated: bool
    on_failure: str
    retry: Retry
    timeout: timedelta | None
    chunk_size: int
    priority: int
    model: type[pydantic.BaseModel] | None
    takes_context: bool
    reduce: bool = False

    def snapshot(self) -> dict[str, Any]:
        """What a run keeps of this step (enough to advance it without the Python definitions)."""
        return {"name": self.name, "kind": self.kind, "gated": self.gated, "on_failure": self.on_failure,
                "max_attempts": self.retry.max_attempts, "priority": self.priority, "reduce": self.reduce}


class Pipeline:
    """A declared pipeline: steps in declaration order, an optional reduction; ``start()`` makes a run."""

    def __init__(self, queue: Queue, name: str, *, chunk_size: int = 1000, shard: str | None = None,
                 on_chunk_failure: str = "fail", priority: int = 0) -> None:
        check_text("pipeline name", name, max_chars=_NAME_CHARS)
        self.chunk_size = _chunk_size(chunk_size)
        self.shard = validate_shard_name(shard) if shard is not None else DEFAULT_SHARD
        self.on_chunk_failure = _policy("on_chunk_failure", on_chunk_failure)
        self.priority = check_int("priority", priority, -32768, 32767)
        self.queue = queue
        self.name = name
        self.steps: list[Step] = []
        self.reduction: Step | None = None

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} steps={[s.name for s in self.steps]} reduce={self.reduction is not None}>"

    @property
    def store(self) -> JobStore:
        """The store of the database that holds this pipeline's runs (the one of its shard)."""
        return self.queue.store_for(self.shard)

    @property
    def database(self) -> str:
        return self.queue.shard_map.database_for(self.shard)

    def step(self, name: str, *, gated: bool = True, retry: Retry | None = None, timeout: timedelta | None = None,
             on_failure: str | None = None, chunk_size: int | None = None, priority: int | None = None,
             **unknown: Any) -> Callable[[F], F]:
        """Declare the next step. The first takes the run's params (its first parameter's pydantic model, or a
        dict); each later one a chunk (a list of items). ``ctx.emit(items)`` feeds the next step (or the
        reduction). ``gated`` (default): the step starts once every chunk of the step before it is finished;
        ``gated=False`` (streaming): each chunk moves on as soon as the step before made it. ``retry`` and
        ``timeout`` are those of its jobs; ``on_failure`` overrides the pipeline's ``on_chunk_failure``;
        ``chunk_size`` the pipeline's for what this step emits."""
        self._refuse_unknown("step", unknown, "gated, retry, timeout, on_failure, chunk_size, priority")
        return self._declare(name, gated=gated, retry=retry, timeout=timeout, on_failure=on_failure,
                             chunk_size=chunk_size, priority=priority, reduce=False)

    def reduce(self, name: str = "reduce", *, retry: Retry | None = None, timeout: timedelta | None = None,
               **unknown: Any) -> Callable[[F], F]:
        """Declare the reduction: it runs once, after the last step, over an iterator of every item the last step
        emitted (read from the database page by page, never all in memory). Its JSON return value is the run's
        result. It is always gated, and a failed reduction fails the run."""
        self._refuse_unknown("reduce", unknown, "retry, timeout")
        if self.reduction is not None:
            raise InvalidJobOptions(f"pipeline {self.name!r} already has a reduction ({self.reduction.name!r})")
        return self._declare(name, gated=True, retry=retry, timeout=timeout, on_failure="fail", chunk_size=None,
                             priority=None, reduce=True)

    def _refuse_unknown(self, what: str, unknown: dict[str, Any], allowed: str) -> None:
        if unknown:
            raise InvalidJobOptions(f"unknown {what} option(s) {', '.join(sorted(map(repr, unknown)))} in pipeline "
                                    f"{self.name!r}: allowed are {allowed}")

    def _declare(self, name: str, *, gated: bool, retry: Retry | None, timeout: timedelta | None,
                 on_failure: str | None, chunk_size: int | None, priority: int | None,
                 reduce: bool) -> Callable[[F], F]:
        check_text("step name", name, max_chars=_NAME_CHARS)
        if not isinstance(gated, bool):
            raise InvalidJobOptions(f"gated must be True or False, got {type(gated).__name__}")
        if retry is not None and not isinstance(retry, Retry):
            raise InvalidJobOptions(f"retry must be a finejobs.Retry, got {type(retry).__name__}")
        names = [s.name for s in self.steps] + ([self.reduction.name] if self.reduction else [])
        if name in names:
            raise InvalidJobOptions(f"pipeline {self.name!r} already has a step named {name!r}")
        policy = _policy("on_failure", on_failure) if on_failure is not None else self.on_chunk_failure
        size = _chunk_size(chunk_size) if chunk_size is not None else self.chunk_size
        prio = check_int("priority", priority, -32768, 32767) if priority is not None else self.priority

        def register(fn: F) -> F:
            if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn)):
                raise InvalidJobOptions(f"step {name!r} of pipeline {self.name!r}: async steps are not supported "
                                        "yet; declare it with def")
            first = not reduce and not self.steps
            step = Step(index=len(self.steps), name=name, kind=f"{self.name}.{name}", fn=fn, gated=gated,
                        on_failure=policy, retry=retry or Retry(), timeout=timeout, chunk_size=size, priority=prio,
                        model=_payload_model(fn) if first else None,
                        takes_context=_positional(fn) >= 2, reduce=reduce)

            def handler(payload: dict[str, Any], ctx: JobContext) -> Any:
                if step.reduce:
                    return engine.run_reduction(self, step, payload, ctx)
                return engine.run_step(self, step, payload, ctx)

            handler.__qualname__ = f"pipeline {self.name!r} step {name!r}"
            self.queue.job(step.kind, retry=step.retry, timeout=timeout, priority=prio, shard=self.shard)(handler)
            if reduce:
                self.reduction = step
            else:
                self.steps.append(step)
            return fn

        return register

    def snapshot(self) -> list[dict[str, Any]]:
        return [s.snapshot() for s in self.steps] + ([self.reduction.snapshot()] if self.reduction else [])

    def start(self, params: Any = None, *, conn: UserConnection | None = None) -> PipelineRun:
        """Start a run with ``params`` (validated by the first step's model; a dict without one). With ``conn``:
        inside the caller's transaction (on the database holding the pipeline's shard). Bad params, or a
        pipeline without steps, raise a finejobs error and write nothing."""
        if not self.steps:
            raise InvalidJobOptions(f"pipeline {self.name!r} has no steps: declare one with @pipeline.step(...)")
        first = self.steps[0]
        checker = JobKind(self.queue, self.name, _no_params, model=first.model, retry=Retry(), expires_in=None,
                          timeout=None, priority=0)  # validates the params as a kind validates payloads
        if params is None and first.model is None:
            params = {}
        values = checker.validate(params)
        params_json = encode(self.name, values, max_bytes=self.queue.max_payload_bytes)
        row = self.store.pipeline_start(name=self.name, params_json=params_json, shard=self.shard,
                                        steps=self.snapshot(), now=self.queue.clock(), conn=conn)
        return PipelineRun(self.queue, row.id, self.name, self.shard)

    def run(self, run_id: int) -> PipelineRun:
        """The run with this id (PipelineNotFound if it is not a run of this pipeline)."""
        row = self.store.pipeline_get(pipeline_id=run_id)
        if row.name != self.name:
            raise PipelineNotFound(f"pipeline run {run_id} is a run of {row.name!r}, not of {self.name!r}")
        return PipelineRun(self.queue, run_id, self.name, self.shard)


@dataclass(frozen=True)
class PipelineRun:
    """A handle on one run: ``progress()``, ``wait()``, ``cancel()``."""

    queue: Queue
    id: int
    name: str
    shard: str = DEFAULT_SHARD

    @property
    def store(self) -> JobStore:
        return self.queue.store_for(self.shard)

    def progress(self) -> PipelineInfo:
        """The run's state and each step's counters, now."""
        return engine.info(self.store, self.id, database=self.queue.shard_map.database_for(self.shard))

    def wait(self, timeout: float = 60.0, *, poll: float = 0.05) -> PipelineInfo:
        """Poll until the run ends; its final progress. TimeoutError if it is still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.progress()
            if info.finished:
                return info
            if time.monotonic() >= deadline:
                raise TimeoutError(f"pipeline run {self.id} ({self.name}) still running after {timeout:g}s")
            time.sleep(poll)

    @property
    def result(self) -> Any:
        """The reduction's result (None until the run succeeded, and for a run without a reduction)."""
        return self.progress().result

    def cancel(self, reason: str = "cancelled") -> PipelineInfo:
        """Cancel the run: its waiting jobs are cancelled, running ones' output is discarded when they finish."""
        return engine.cancel(self.store, self.id, reason=reason, now=self.queue.clock(),
                             database=self.queue.shard_map.database_for(self.shard))


def _no_params(payload: dict[str, Any]) -> None:  # pragma: no cover - never called: a validator's handler
    pass


def _chunk_size(value: int) -> int:
    return check_int("chunk_size", value, 1, MAX_CHUNK_SIZE)


def _policy(name: str, value: str) -> str:
    if value not in FAILURE_POLICIES:
        raise InvalidJobOptions(f"{name} must be 'fail' or 'skip', got {value!r}")
    return value


def _positional(fn: Callable[..., Any]) -> int:
    params = inspect.signature(fn).parameters.values()
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


__all__ = ["MAX_CHUNK_SIZE", "Pipeline", "PipelineInfo", "PipelineRun", "Step", "StepContext", "declared",
           "pipeline"]
