"""The public entry point: a Queue holds the job kinds and the store; ``@queue.job`` declares a kind."""

from __future__ import annotations

import inspect
import json
import os
import threading
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import pydantic

from finejobs.clock import Clock, utcnow
from finejobs.errors import (
    ConfigurationError,
    InvalidJobOptions,
    PayloadError,
    UnknownKindError,
)
from finejobs.jobs import Job, JobState
from finejobs.retry import Retry
from finejobs.schedule_ops import Schedules
from finejobs.scheduler import ScheduleSpec, make_spec
from finejobs.schedules import Rule
from finejobs.sharding import DEFAULT_SHARD, validate_shard_name
from finejobs.store import JobStore, NewJob, Stats, UserConnection

if TYPE_CHECKING:
    from finejobs.worker import Worker

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000
_PRIORITY_RANGE = range(-32768, 32768)


@dataclass(frozen=True)
class JobSpec:
    """One item of ``enqueue_many`` with options of its own (unset options take the call's)."""

    payload: Any
    shard: str | None = None
    run_at: datetime | None = None
    expires_at: datetime | None = None
    priority: int | None = None
    unique_key: str | None = None


class JobKind(Generic[P, R]):
    """A job kind: a stable name bound to a handler, a payload model, a retry policy and an expiry.

    Made by ``@queue.job(...)``. Calling it calls the handler directly (handy in tests).
    """

    def __init__(
        self,
        queue: Queue,
        name: str,
        handler: Callable[P, R],
        *,
        model: type[pydantic.BaseModel] | None,
        retry: Retry,
        expires_in: timedelta | None,
        timeout: timedelta | None,
        priority: int,
    ) -> None:
        self.queue = queue
        self.name = name
        self.handler = handler
        self.model = model
        self.retry = retry
        self.expires_in = expires_in
        self.timeout = timeout
        self.priority = priority
        self.is_async = inspect.iscoroutinefunction(handler)
        self.takes_context = _positional_count(handler) >= 2

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.handler(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<JobKind {self.name!r} handler={getattr(self.handler, '__qualname__', self.handler)!r}>"

    def enqueue(
        self,
        payload: Any,
        *,
        shard: str | None = None,
        run_at: datetime | None = None,
        expires_at: datetime | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        conn: UserConnection | None = None,
    ) -> Job:
        """Validate ``payload`` and store one job. With ``conn``, inside the caller's transaction."""
        spec = JobSpec(payload, shard=shard, run_at=run_at, expires_at=expires_at, priority=priority,
                       unique_key=unique_key)
        return self.queue._insert([(self, spec)], conn=conn)[0]

    def enqueue_many(
        self,
        items: Iterable[Any],
        *,
        shard: str | None = None,
        run_at: datetime | None = None,
        expires_at: datetime | None = None,
        priority: int | None = None,
        conn: UserConnection | None = None,
    ) -> list[Job]:
        """Validate every item, then store them all in one statement (all or nothing).

        An item is a payload, or a ``JobSpec`` carrying a payload with options of its own.
        """
        defaults = JobSpec(None, shard=shard, run_at=run_at, expires_at=expires_at, priority=priority)
        pairs = [(self, _merge(item, defaults)) for item in items]
        return self.queue._insert(pairs, conn=conn)

    def validate(self, payload: Any) -> dict[str, Any]:
        """The payload as the JSON-ready dict that will be stored; raises PayloadError naming the fields."""
        if self.model is None:
            if not isinstance(payload, Mapping):
                raise PayloadError(self.name, ["<root>"], f"expected a JSON object, got {type(payload).__name__}")
            return dict(payload)
        if isinstance(payload, self.model):
            return payload.model_dump(mode="json", by_alias=True)
        if isinstance(payload, pydantic.BaseModel):
            payload = payload.model_dump()
        if not isinstance(payload, Mapping):
            raise PayloadError(self.name, ["<root>"],
                               f"expected {self.model.__name__} or a mapping, got {type(payload).__name__}")
        extra = _unknown_fields(self.model, payload)
        if extra:
            raise PayloadError(self.name, extra, "; ".join(f"{name}: extra field not permitted" for name in extra))
        try:
            return self.model.model_validate(payload).model_dump(mode="json", by_alias=True)
        except pydantic.ValidationError as exc:
            fields = [".".join(str(p) for p in err["loc"]) or "<root>" for err in exc.errors()]
            details = "; ".join(f"{f}: {err['msg']}" for f, err in zip(fields, exc.errors(), strict=True))
            raise PayloadError(self.name, fields, details) from None

    def parse(self, payload: Mapping[str, Any]) -> Any:
        """The stored payload as the handler's argument."""
        return dict(payload) if self.model is None else self.model.model_validate(payload)


class Queue:
    """Job kinds plus the database that holds their jobs.

    ``url`` defaults to the environment variable FINEJOBS_DATABASE_URL; nothing connects until first use.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool_size: int = 5,
        clock: Clock = utcnow,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._url = url
        self._pool_size = pool_size
        self._store: JobStore | None = None
        self._lock = threading.Lock()
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.kinds: dict[str, JobKind[Any, Any]] = {}
        self.declared_schedules: dict[str, ScheduleSpec] = {}  # upserted at worker start

    # ---------------------------------------------------------------- configuration

    @property
    def url(self) -> str:
        url = self._url or os.environ.get("FINEJOBS_DATABASE_URL")
        if not url:
            raise ConfigurationError(
                "no database URL: pass finejobs.Queue(url) or set FINEJOBS_DATABASE_URL"
            )
        return url

    def configure(self, *, url: str | None = None, pool_size: int | None = None) -> None:
        """Change the database URL or pool size (the CLI's --database-url and --pool-size do this)."""
        with self._lock:
            if self._store is not None:
                self._store.dispose()
                self._store = None
            if url is not None:
                self._url = url
            if pool_size is not None:
                self._pool_size = pool_size

    @property
    def store(self) -> JobStore:
        with self._lock:
            if self._store is None:
                self._store = JobStore.from_url(self.url, pool_size=self._pool_size)
            return self._store

    def close(self) -> None:
        """Release the connection pool."""
        with self._lock:
            if self._store is not None:
                self._store.dispose()
                self._store = None

    def migrate(self) -> list[int]:
        """Create or upgrade the finejobs tables; returns the migration versions applied."""
        return self.store.migrate()

    # ---------------------------------------------------------------- job kinds

    def job(
        self,
        name: str,
        *,
        retry: Retry | None = None,
        expires_in: timedelta | None = None,
        timeout: timedelta | None = None,
        priority: int = 0,
        model: type[pydantic.BaseModel] | None = None,
        schedule: Rule | None = None,
    ) -> Callable[[Callable[P, R]], JobKind[P, R]]:
        """Declare a job kind. The payload model comes from the handler's first parameter's annotation.

        ``schedule=`` (a rule: Cron, Every, ...) also declares a schedule named after the kind, with an
        empty payload; use ``queue.schedule(...)`` for a payload or other options.
        """
        if not name or len(name) > 200:
            raise ValueError("a job kind name must have 1 to 200 characters")
        if priority not in _PRIORITY_RANGE:
            raise ValueError(f"priority must be within {_PRIORITY_RANGE.start}..{_PRIORITY_RANGE.stop - 1}")
        for label, value in (("expires_in", expires_in), ("timeout", timeout)):
            if value is not None and value <= timedelta(0):
                raise ValueError(f"{label} must be positive")

        def register(handler: Callable[P, R]) -> JobKind[P, R]:
            if name in self.kinds:
                raise ValueError(f"job kind {name!r} is already registered")
            kind = JobKind(self, name, handler, model=model or _payload_model(handler),
                           retry=retry or Retry(), expires_in=expires_in, timeout=timeout, priority=priority)
            self.kinds[name] = kind
            if schedule is not None:
                try:
                    self.schedule(name, kind, schedule)
                except BaseException:
                    del self.kinds[name]
                    raise
            return kind

        return register

    # ---------------------------------------------------------------- schedules

    def schedule(self, name: str, kind: str | JobKind[Any, Any], rule: Rule, *, payload: Any = None,
                 **options: Any) -> ScheduleSpec:
        """Declare a recurring schedule in code; every worker upserts it when it starts.

        ``queue.schedule("policy-renewals", renew_policies, Cron("0 6 * * MON", tz=...), payload={...})``.
        Options: description, shard, priority, max_attempts, start, end, misfire ("coalesce", "all",
        "skip"), misfire_limit, misfire_grace, overlap ("skip", "allow", "wait"), expires_in.
        See docs/schedules.md.
        """
        if name in self.declared_schedules:
            raise ValueError(f"schedule {name!r} is already declared")
        spec = make_spec(self, name, kind, rule, payload=payload, **options)
        self.declared_schedules[name] = spec
        return spec

    @property
    def schedules(self) -> Schedules:
        """Schedule operations on the database: list, get, add, update, delete, pause, run_now..."""
        return Schedules(self)

    def kind(self, name: str) -> JobKind[Any, Any]:
        try:
            return self.kinds[name]
        except KeyError:
            known = ", ".join(sorted(self.kinds)) or "none"
            raise UnknownKindError(f"unknown job kind {name!r} (registered: {known})") from None

    # ---------------------------------------------------------------- enqueue and read

    def enqueue(self, kind: str, payload: Any, **options: Any) -> Job:
        """Enqueue by kind name: ``queue.enqueue("dosage.alert", {...}, shard=...)``."""
        return self.kind(kind).enqueue(payload, **options)

    def enqueue_many(self, kind: str, items: Iterable[Any], **options: Any) -> list[Job]:
        return self.kind(kind).enqueue_many(items, **options)

    def get(self, job_id: int) -> Job:
        return self.store.job_get(job_id=job_id, now=self.clock())

    def jobs(self, *, state: JobState | str | None = None, kind: str | None = None,
             shard: str | None = None, limit: int = 50) -> list[Job]:
        return self.store.job_list(now=self.clock(), state=JobState(state) if state else None, kind=kind,
                                   shard=shard, limit=limit)

    def cancel(self, job_id: int, reason: str = "cancelled by operator") -> Job:
        return self.store.job_cancel(job_id=job_id, now=self.clock(), reason=reason)

    def retry(self, job_id: int) -> Job:
        return self.store.job_retry(job_id=job_id, now=self.clock())

    def stats(self) -> Stats:
        return self.store.job_stats(now=self.clock())

    def worker(self, **options: Any) -> Worker:
        """A Worker for this queue (see finejobs.Worker for the options)."""
        from finejobs.worker import Worker

        return Worker(self, **options)

    # ---------------------------------------------------------------- internals

    def _insert(self, pairs: list[tuple[JobKind[Any, Any], JobSpec]], *, conn: UserConnection | None) -> list[Job]:
        now = self.clock()
        rows = [self._new_job(kind, spec, now) for kind, spec in pairs]
        return self.store.job_insert_many(rows, now=now, conn=conn)

    def _new_job(self, kind: JobKind[Any, Any], spec: JobSpec, now: datetime) -> NewJob:
        payload = kind.validate(spec.payload)
        try:
            payload_json = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PayloadError(kind.name, ["<root>"], f"not JSON-serializable: {exc}") from None
        nul = _nul_path(payload) if "\\u0000" in payload_json else None  # json.dumps escapes NUL as \u0000
        if nul is not None:
            raise PayloadError(kind.name, [nul], f"{nul}: NUL characters (\\x00) cannot be stored in PostgreSQL")
        size = len(payload_json.encode("utf-8"))
        if size > self.max_payload_bytes:
            raise PayloadError(kind.name, ["<root>"],
                               f"payload is {size} bytes, over the limit of {self.max_payload_bytes}")
        run_at = _aware("run_at", spec.run_at) or now
        expires_at = _aware("expires_at", spec.expires_at)
        if expires_at is None and kind.expires_in is not None:
            expires_at = run_at + kind.expires_in
        if expires_at is not None and expires_at <= run_at:
            raise InvalidJobOptions(f"expires_at ({expires_at.isoformat()}) must be after run_at "
                                    f"({run_at.isoformat()})")
        priority = kind.priority if spec.priority is None else spec.priority
        if not isinstance(priority, int) or priority not in _PRIORITY_RANGE:
            raise InvalidJobOptions(f"priority must be an integer within -32768..32767, got {priority!r}")
        if spec.unique_key is not None and (
            not isinstance(spec.unique_key, str) or not spec.unique_key or "\x00" in spec.unique_key
        ):
            raise InvalidJobOptions("unique_key must be a non-empty string without NUL characters")
        return NewJob(
            kind=kind.name,
            payload=payload,
            payload_json=payload_json,
            shard=validate_shard_name(DEFAULT_SHARD if spec.shard is None else spec.shard),
            priority=priority,
            run_at=run_at,
            expires_at=expires_at,
            max_attempts=kind.retry.max_attempts,
            unique_key=spec.unique_key,
        )


def _merge(item: Any, defaults: JobSpec) -> JobSpec:
    if not isinstance(item, JobSpec):
        return JobSpec(item, shard=defaults.shard, run_at=defaults.run_at, expires_at=defaults.expires_at,
                       priority=defaults.priority)
    return JobSpec(
        item.payload,
        shard=defaults.shard if item.shard is None else item.shard,
        run_at=defaults.run_at if item.run_at is None else item.run_at,
        expires_at=defaults.expires_at if item.expires_at is None else item.expires_at,
        priority=defaults.priority if item.priority is None else item.priority,
        unique_key=item.unique_key,
    )


def _nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key or string holding a NUL character, else None."""
    if isinstance(value, str):
        return (path or "<root>") if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here
            found = _nul_path(item, here)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _nul_path(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidJobOptions(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobOptions(
            f"{name} is a naive datetime ({value.isoformat()}): pass a timezone-aware one, "
            "e.g. datetime.now(timezone.utc)"
        )
    return value


def _positional_count(handler: Callable[..., Any]) -> int:
    params = inspect.signature(handler).parameters.values()
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _payload_model(handler: Callable[..., Any]) -> type[pydantic.BaseModel] | None:
    params = [p for p in inspect.signature(handler).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not params:
        raise ValueError(f"handler {handler!r} must take the payload as its first parameter")
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # unresolved forward references: fall back to the raw annotation
        hints = {}
    annotation = hints.get(params[0].name, params[0].annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None


def _unknown_fields(model: type[pydantic.BaseModel], payload: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of keys that no field accepts, in this model and the models nested in it.

    A model (or nested model) configured with ``extra="allow"`` or ``extra="ignore"`` explicitly keeps its
    own behaviour; by default finejobs refuses unknown keys, since a typo in a payload is a lost field.
    """
    if model.model_config.get("extra") in ("allow", "ignore"):
        return []
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        fields[name] = info
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                fields[alias] = info
    unknown: list[str] = []
    for key, value in payload.items():
        accepting = fields.get(str(key))
        if accepting is None:
            unknown.append(f"{prefix}{key}")
        else:
            unknown += _unknown_nested(accepting.annotation, value, f"{prefix}{key}")
    return sorted(unknown)


def _unknown_nested(annotation: Any, value: Any, path: str) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _unknown_fields(annotation, value, f"{path}.") if isinstance(value, Mapping) else []
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset) and args and isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _unknown_nested(args[0], item, f"{path}.{i}")]
    if origin is dict and len(args) == 2 and isinstance(value, Mapping):
        return [p for k, item in value.items() for p in _unknown_nested(args[1], item, f"{path}.{k}")]
    if args and origin is not dict:  # Optional[...], unions, Annotated[...]: the first model that fits
        for arg in args:
            found = _unknown_nested(arg, value, path)
            if found:
                return found
    return []
