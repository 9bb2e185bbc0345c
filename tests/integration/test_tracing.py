"""OpenTelemetry tracing on a real PostgreSQL, recorded by the SDK's in-memory exporter (finejobs.tracing):
enqueue spans, the trace context stored on each job, execution spans linked to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import finejobs
from finejobs import Cancel, ConfigurationError, JobSpec, Queue, Retry, Worker, tracing

SECOND = timedelta(seconds=1)
NO_JITTER = Retry(max_attempts=3, backoff=10 * SECOND, max_backoff=timedelta(hours=1), jitter=timedelta(0))
DB = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    made = TracerProvider()
    yield made
    tracing.disable()
    made.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> InMemorySpanExporter:
    """Tracing on, every ended span in the exporter."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(tracer_provider=provider)
    return exporter


@pytest.fixture
def kinds(queue: Queue, provider: TracerProvider) -> Queue:
    tracer = provider.get_tracer("app")

    @queue.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        with tracer.start_as_current_span("send sms"):  # the handler's own span: a child of the execution
            pass

    @queue.job("boom", retry=Retry(max_attempts=1))
    def boom(payload: dict[str, Any]) -> None:
        raise RuntimeError("gateway down")

    @queue.job("flaky", retry=NO_JITTER)
    def flaky(payload: dict[str, Any], ctx: finejobs.JobContext) -> None:
        if ctx.attempt == 1:
            raise TimeoutError("slow gateway")

    @queue.job("quit")
    def quit_(payload: dict[str, Any]) -> None:
        raise Cancel("patient opted out")

    @queue.job("async")
    async def in_loop(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        with tracer.start_as_current_span("async step"):
            pass

    return queue


def work(queue: Queue) -> Worker:
    worker = queue.worker(listen=False, register=False, run_scheduler=False)
    assert isinstance(worker, Worker)
    return worker


def stored_trace(db: DB, job_id: int) -> Any:
    row = db.execute("SELECT trace FROM finejobs_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row[0]


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def traceparent(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{int(span.context.trace_flags):02x}"


# ---------------------------------------------------------------- enqueue


def test_an_enqueue_makes_a_producer_span_and_stores_its_context_on_the_job(
        kinds: Queue, spans: InMemorySpanExporter, provider: TracerProvider, db: DB) -> None:
    with provider.get_tracer("app").start_as_current_span("POST /alerts") as request:
        job = kinds.enqueue("ok", {"patient": 42}, shard="district-3")
    (send,) = by_name(spans, "enqueue ok")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "finejobs", "messaging.operation.type": "send", "messaging.operation.name": "enqueue",
        "messaging.destination.name": "ok", "messaging.destination.partition.id": "district-3",
        "messaging.message.id": str(job.id)}
    assert send.status.status_code is StatusCode.UNSET
    assert stored_trace(db, job.id) == {"traceparent": traceparent(send)}
    assert job.trace == {"traceparent": traceparent(send)}
    assert kinds.get(job.id).trace == {"traceparent": traceparent(send)}


def test_enqueue_many_is_one_span_for_the_batch(kinds: Queue, spans: InMemorySpanExporter, db: DB) -> None:
    jobs = kinds.kind("ok").enqueue_many([JobSpec({}, shard="district-1"), JobSpec({}, shard="district-2"),
                                          JobSpec({}, shard="district-2")])
    (send,) = spans.get_finished_spans()
    assert send.name == "enqueue ok" and send.parent is None  # no request around it: a trace of its own
    attributes = dict(send.attributes or {})
    assert attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in attributes and "messaging.destination.partition.id" not in attributes
    assert [stored_trace(db, j.id) for j in jobs] == [{"traceparent": traceparent(send)}] * 3


def test_a_refused_enqueue_is_an_error_span_and_writes_nothing(kinds: Queue, spans: InMemorySpanExporter,
                                                               db: DB) -> None:
    with pytest.raises(finejobs.InvalidJobOptions):
        kinds.enqueue("ok", {}, shard="Not A Shard")
    (send,) = spans.get_finished_spans()
    assert send.status.status_code is StatusCode.ERROR
    assert [e.name for e in send.events] == ["exception"]
    assert dict(send.attributes or {})["error.type"] == "InvalidJobOptions"
    assert db.execute("SELECT count(*) FROM finejobs_jobs").fetchone() == (0,)


# ---------------------------------------------------------------- execution


def test_an_execution_span_links_to_the_enqueue(kinds: Queue, spans: InMemorySpanExporter,
                                                provider: TracerProvider) -> None:
    with provider.get_tracer("app").start_as_current_span("POST /alerts"):
        job = kinds.enqueue("ok", {}, shard="district-3")
    (send,) = by_name(spans, "enqueue ok")
    worker = work(kinds)
    assert len(worker.work_once()) == 1
    (process,) = by_name(spans, "process ok")
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is None  # hours may pass between the two: a link, not a parent
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == \
        [(send.context.trace_id, send.context.span_id)]  # type: ignore[union-attr]
    assert dict(process.attributes or {}) == {
        "messaging.system": "finejobs", "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.destination.name": "ok", "messaging.destination.partition.id": "district-3",
        "messaging.message.id": str(job.id), "finejobs.job.attempt": 1, "finejobs.worker.id": worker.worker_id,
        "finejobs.job.outcome": "succeeded"}
    assert process.status.status_code is StatusCode.UNSET
    (inner,) = by_name(spans, "send sms")
    assert inner.parent is not None and inner.parent.span_id == process.context.span_id  # type: ignore[union-attr]


def test_failures_are_error_spans_and_cancels_are_not(kinds: Queue, spans: InMemorySpanExporter,
                                                      clock: Any) -> None:
    for kind in ("boom", "flaky", "quit"):
        kinds.enqueue(kind, {})
    worker = work(kinds)
    assert len(worker.work_once()) == 3
    clock.advance(10 * SECOND)
    assert len(worker.work_once()) == 1  # flaky's second attempt
    outcomes = {(s.name, dict(s.attributes or {})["finejobs.job.attempt"]):
                (dict(s.attributes or {})["finejobs.job.outcome"], s.status.status_code)
                for s in spans.get_finished_spans() if s.name.startswith("process")}
    assert outcomes == {("process boom", 1): ("failed", StatusCode.ERROR),
                        ("process flaky", 1): ("retried", StatusCode.ERROR),
                        ("process flaky", 2): ("succeeded", StatusCode.UNSET),
                        ("process quit", 1): ("cancelled", StatusCode.UNSET)}
    (boom,) = by_name(spans, "process boom")
    (event,) = boom.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "RuntimeError"
    assert dict(event.attributes or {})["exception.message"] == "gateway down"
    assert dict(boom.attributes or {})["error.type"] == "RuntimeError"
    assert boom.status.description == "RuntimeError: gateway down"
    assert all(len(s.links) == 1 for s in spans.get_finished_spans() if s.name.startswith("process"))


def test_an_async_handler_runs_inside_its_execution_span(kinds: Queue, spans: InMemorySpanExporter) -> None:
    kinds.enqueue("async", {})
    assert len(work(kinds).work_once()) == 1
    (process,) = by_name(spans, "process async")
    (inner,) = by_name(spans, "async step")
    assert inner.parent is not None and inner.parent.span_id == process.context.span_id  # type: ignore[union-attr]
    assert len(process.links) == 1


def test_a_job_without_a_readable_trace_runs_with_an_unlinked_span(kinds: Queue, spans: InMemorySpanExporter,
                                                                   provider: TracerProvider, db: DB) -> None:
    tracing.disable()
    plain = kinds.enqueue("ok", {})
    junk = kinds.enqueue("ok", {})
    bad = kinds.enqueue("ok", {})
    db.execute("""UPDATE finejobs_jobs SET trace = '"junk"' WHERE id = %s""", (junk.id,))
    db.execute("""UPDATE finejobs_jobs SET trace = '{"traceparent": "00-zz-yy-01"}' WHERE id = %s""", (bad.id,))
    assert kinds.get(junk.id).trace is None
    assert kinds.get(bad.id).trace == {"traceparent": "00-zz-yy-01"}  # kept as stored; not a valid context
    tracing.enable(tracer_provider=provider)
    worker = work(kinds)
    assert len(worker.work_once()) == 3
    assert worker.stats["succeeded"] == 3
    processed = by_name(spans, "process ok")
    assert sorted(dict(s.attributes or {})["messaging.message.id"] for s in processed) == \
        sorted(str(j.id) for j in (plain, junk, bad))
    assert [len(s.links) for s in processed] == [0, 0, 0]


# ---------------------------------------------------------------- off, and never in the way


def test_with_tracing_off_there_are_no_spans_and_no_stored_context(kinds: Queue, provider: TracerProvider,
                                                                   db: DB) -> None:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert not tracing.is_enabled()
    job = kinds.enqueue("ok", {})
    many = kinds.kind("ok").enqueue_many([{}, {}])
    assert len(work(kinds).work_once()) == 3
    assert [s.name for s in exporter.get_finished_spans()] == ["send sms"] * 3  # only the handler's own
    assert [stored_trace(db, j.id) for j in (job, *many)] == [None, None, None]
    assert job.trace is None


class Exploding(SpanProcessor):
    """A span processor that fails on every span (a broken exporter or SDK plugin)."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("exporter bug")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter bug")


def test_a_failing_tracer_never_breaks_an_enqueue_or_a_job(kinds: Queue, provider: TracerProvider, db: DB,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    @kinds.job("plain")
    def plain(payload: dict[str, Any]) -> None:
        pass

    provider.add_span_processor(Exploding())
    tracing.enable(tracer_provider=provider)
    with caplog.at_level(logging.WARNING, logger="finejobs.tracing"):
        job = kinds.enqueue("plain", {})
        failing = kinds.enqueue("boom", {})
        worker = work(kinds)
        assert len(worker.work_once()) == 2
    assert (worker.stats["succeeded"], worker.stats["failed"]) == (1, 1)
    assert stored_trace(db, job.id) is None and stored_trace(db, failing.id) is None
    assert "tracing: starting an enqueue span failed (RuntimeError: exporter bug)" in caplog.text
    assert "tracing: starting an execution span failed" in caplog.text


def test_enable_refuses_what_is_not_a_tracer_provider() -> None:
    with pytest.raises(ConfigurationError, match="tracer_provider must be an OpenTelemetry TracerProvider"):
        tracing.enable(tracer_provider="jaeger")  # type: ignore[arg-type]
    assert not tracing.is_enabled()


def test_a_new_shard_partition_keeps_the_stored_context(fresh: Queue, spans: InMemorySpanExporter) -> None:
    job = fresh.enqueue("ok", {}, shard="district-9")
    assert job.trace is not None
    assert fresh.store.shard_add(["district-9"]) == ["district-9"]  # its rows move to a partition of their own
    assert fresh.get(job.id).trace == job.trace
