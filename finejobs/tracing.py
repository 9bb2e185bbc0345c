"""OpenTelemetry tracing of enqueues and executions (the extra ``finejobs[otel]``; off by default).

```python
import finejobs.tracing
finejobs.tracing.enable()                    # the global TracerProvider, or enable(tracer_provider=...)
```
Then every enqueue call makes a PRODUCER span (``enqueue <kind>``) and stores its W3C trace context on the
jobs it wrote (the ``trace`` column); every execution makes a CONSUMER span (``process <kind>``) with a
*link* to that context: a trace viewer leads from the request that enqueued a job to each attempt that ran
it, hours later, in another process. The attributes follow OpenTelemetry's messaging semantic conventions
(docs/metrics.md lists them). Handlers run inside their execution span, so their own spans are its children.

Off (the default, or after ``disable()``), the enqueue and execution paths test one boolean and store no
trace context. Tracing never breaks a job: an error inside it is logged and the enqueue or the execution
goes on without its span.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finejobs._version import __version__
from finejobs.errors import Cancel, ConfigurationError, Snooze
from finejobs.jobs import Job, trace_carrier

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the extra is not installed: enable() says so
    _OTEL = False
else:
    _OTEL = True

log = logging.getLogger("finejobs.tracing")

SYSTEM = "finejobs"  # messaging.system
ENQUEUE = "enqueue"  # messaging.operation.name of the producer span (operation type "send")
PROCESS = "process"  # ... of the consumer span (operation type "process")

_tracer: Tracer | None = None  # None: tracing is off
_propagator: Any = None
_warned: set[str] = set()


def enable(tracer_provider: TracerProvider | None = None) -> None:
    """Trace enqueues and executions from now on, in this process (the enqueuers' and the workers' processes
    each enable it). ``tracer_provider``: default the global one (``opentelemetry.trace.get_tracer_provider()``,
    followed even if it is set later)."""
    global _tracer, _propagator
    if not _OTEL:
        raise ConfigurationError("tracing needs OpenTelemetry: pip install 'finejobs[otel]'")
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        raise ConfigurationError(f"tracer_provider must be an OpenTelemetry TracerProvider, got "
                                 f"{type(tracer_provider).__name__}")
    _propagator = TraceContextTextMapPropagator()
    _warned.clear()  # a new provider: its failures are news
    _tracer = otel_trace.get_tracer("finejobs", __version__, tracer_provider=tracer_provider)


def disable() -> None:
    """Stop tracing: no spans, and jobs enqueued from now on store no trace context."""
    global _tracer
    _tracer = None


def is_enabled() -> bool:
    return _tracer is not None


def _warn(where: str, exc: BaseException) -> None:
    if where not in _warned:  # once per place: a broken exporter must not flood the log
        _warned.add(where)
        log.warning("tracing: %s failed (%s: %s); jobs go on without it", where, type(exc).__name__, exc)


# ---------------------------------------------------------------- producer: enqueue


def enqueue(kinds: Sequence[str], count: int, insert: Callable[[dict[str, str] | None], list[Job]]) -> list[Job]:
    """Run ``insert(carrier)`` (the enqueue) inside a PRODUCER span whose W3C context is ``carrier``, for the
    jobs to store; without tracing, or if the span cannot be made, ``insert(None)``."""
    tracer = _tracer
    if tracer is None:
        return insert(None)
    try:
        span, token, carrier = _start_send(tracer, kinds, count)
    except Exception as exc:
        _warn("starting an enqueue span", exc)
        return insert(None)
    try:
        jobs = insert(carrier or None)
    except BaseException as exc:
        _end(span, token, error=exc)
        raise
    try:
        if len(jobs) == 1:
            span.set_attribute("messaging.message.id", str(jobs[0].id))
        shards = {job.shard for job in jobs}
        if len(shards) == 1:
            span.set_attribute("messaging.destination.partition.id", shards.pop())
    except Exception as exc:
        _warn("ending an enqueue span", exc)
    _end(span, token, error=None)
    return jobs


def _start_send(tracer: Tracer, kinds: Sequence[str], count: int) -> tuple[Span, object, dict[str, str]]:
    names = sorted(set(kinds))
    attributes: dict[str, str | int] = {"messaging.system": SYSTEM, "messaging.operation.type": "send",
                                        "messaging.operation.name": ENQUEUE}
    if len(names) == 1:
        attributes["messaging.destination.name"] = names[0]
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    span = tracer.start_span(f"{ENQUEUE} {names[0]}" if len(names) == 1 else ENQUEUE, kind=SpanKind.PRODUCER,
                             attributes=attributes)
    ctx = otel_trace.set_span_in_context(span)
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=ctx)
    token = otel_context.attach(ctx)  # the insert runs inside the span (database spans become its children)
    return span, token, carrier


def _end(span: Span, token: object, *, error: BaseException | None) -> None:
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception as exc:
        _warn("leaving a span's context", exc)
    try:
        if error is not None and not isinstance(error, Cancel | Snooze):
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
        span.end()
    except Exception as exc:
        _warn("ending a span", exc)


# ---------------------------------------------------------------- consumer: execution


@dataclass
class Processing:
    """An execution span in progress: ``finish`` ends it with the attempt's outcome."""

    span: Span
    token: object

    def finish(self, outcome: str | None, error: BaseException | None) -> None:
        try:
            if outcome is not None:
                self.span.set_attribute("finejobs.job.outcome", outcome)
        except Exception as exc:
            _warn("ending an execution span", exc)
        _end(self.span, self.token, error=error if outcome in ("failed", "retried", "expired") else None)


def process(job: Job, worker_id: str) -> Processing | None:
    """Start the CONSUMER span of one execution of ``job``, current in this thread (or task) until
    ``finish``; linked to the enqueuer's stored context. None without tracing or if it cannot be made."""
    tracer = _tracer
    if tracer is None:
        return None
    try:
        links = []
        linked = _linked(job.trace)
        if linked is not None:
            links.append(Link(linked))
        span = tracer.start_span(
            f"{PROCESS} {job.kind}", kind=SpanKind.CONSUMER, links=links, record_exception=False,
            set_status_on_exception=False,
            attributes={"messaging.system": SYSTEM, "messaging.operation.type": "process",
                        "messaging.operation.name": PROCESS, "messaging.destination.name": job.kind,
                        "messaging.destination.partition.id": job.shard, "messaging.message.id": str(job.id),
                        "finejobs.job.attempt": job.attempt, "finejobs.worker.id": worker_id})
        token = otel_context.attach(otel_trace.set_span_in_context(span))
    except Exception as exc:
        _warn("starting an execution span", exc)
        return None
    return Processing(span, token)


def _linked(trace: dict[str, str] | None) -> Any:
    """The span context stored on a job (None if there is none, or it is not a valid W3C context)."""
    carrier = trace_carrier(trace)
    if carrier is None:
        return None
    ctx: Context = _propagator.extract(carrier)
    span_context = otel_trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None
