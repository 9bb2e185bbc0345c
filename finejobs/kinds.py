"""Job kinds: ``@queue.job(...)`` binds a stable kind name to a handler, a payload model, a retry policy
and an expiry; a kind validates payloads (every bad field named) and routes jobs to shards."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import pydantic
import pydantic_core

from finejobs.errors import (
    InvalidJobOptions,
    PayloadError,
)
from finejobs.jobs import Job
from finejobs.retry import Retry
from finejobs.sharding import DEFAULT_SHARD, ShardRule
from finejobs.store import (
    UserConnection,
)

if TYPE_CHECKING:
    from finejobs.groups import Group
    from finejobs.queue import Queue

P = ParamSpec("P")
R = TypeVar("R")


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
        shard: str | None = None,
        shard_rule: ShardRule | None = None,
    ) -> None:
        self.queue = queue
        self.name = name
        self.handler = handler
        self.model = model
        self.retry = retry
        self.expires_in = expires_in
        self.timeout = timeout
        self.priority = priority
        self.shard = shard  # the kind's fixed shard (by job type), if any
        self.shard_rule = shard_rule  # or a rule that takes each job's shard from its payload
        # A coroutine function, or a sync wrapper around one made with functools.wraps (it returns the
        # coroutine): both run on the event loop, so the body is awaited, never skipped.
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(inspect.unwrap(handler))
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
        group: Group | None = None,
    ) -> Job:
        """Validate ``payload`` and store one job. With ``conn``, inside the caller's transaction; with
        ``group`` (``queue.group(name)``), as a member of that group."""
        spec = JobSpec(payload, shard=shard, run_at=run_at, expires_at=expires_at, priority=priority,
                       unique_key=unique_key)
        return self.queue._insert([(self, spec)], conn=conn, group=group)[0]

    def enqueue_many(
        self,
        items: Iterable[Any],
        *,
        shard: str | None = None,
        run_at: datetime | None = None,
        expires_at: datetime | None = None,
        priority: int | None = None,
        conn: UserConnection | None = None,
        group: Group | None = None,
    ) -> list[Job]:
        """Validate every item, then store them all in one statement (all or nothing). With a shard map whose
        databases hold the items' shards: one statement per database, each all or nothing (an invalid item
        still writes nothing anywhere; a database that fails leaves the others' rows written).

        An item is a payload, or a ``JobSpec`` carrying a payload with options of its own. With ``group``,
        every job joins that group, counted in the same transaction (a sealed group refuses them all).
        """
        defaults = JobSpec(None, shard=shard, run_at=run_at, expires_at=expires_at, priority=priority)
        pairs = [(self, _merge(item, defaults)) for item in items]
        return self.queue._insert(pairs, conn=conn, group=group)

    def validate(self, payload: Any) -> dict[str, Any]:
        """The payload as the JSON-ready dict that will be stored; raises PayloadError naming the fields."""
        if self.model is None:
            if not isinstance(payload, Mapping):
                raise PayloadError(self.name, ["<root>"],
                                   f"the payload must be a JSON object, got {type(payload).__name__}")
            return dict(payload)
        if isinstance(payload, pydantic.BaseModel):
            # Validated again, even an instance of the kind's own model: model_construct() skips validation.
            payload = payload.model_dump(by_alias=isinstance(payload, self.model), warnings=False)
        if not isinstance(payload, Mapping):
            raise PayloadError(self.name, ["<root>"],
                               f"the payload must be {self.model.__name__} or a mapping, got {type(payload).__name__}")
        problems = [(name, "extra field not permitted") for name in _unknown_fields(self.model, payload)]
        try:
            model = self.model.model_validate(payload)
        except pydantic.ValidationError as exc:
            problems += [(".".join(str(p) for p in err["loc"]) or "<root>", err["msg"]) for err in exc.errors()]
        except RecursionError:
            problems.append(("<root>", "the payload is nested too deeply to validate"))
        if problems:
            raise PayloadError(self.name, [field for field, _ in problems],
                               "; ".join(f"{field}: {why}" for field, why in problems))
        try:
            return model.model_dump(mode="json", by_alias=True)
        except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
            bad = [name for name in self.model.model_fields if not _dumps(model, name)] or ["<root>"]
            raise PayloadError(self.name, bad, f"{', '.join(bad)}: cannot be written as JSON: "
                                               f"{str(exc).splitlines()[0][:200]}") from None

    def shard_for(self, payload: Mapping[str, Any]) -> str:
        """The shard of a job with this (validated) payload when enqueue names none: the kind's rule, else
        its fixed shard, else the default shard."""
        if self.shard_rule is not None:
            return self.shard_rule.shard_for(payload, kind=self.name)
        return self.shard or DEFAULT_SHARD

    def parse(self, payload: Mapping[str, Any]) -> Any:
        """The stored payload as the handler's argument."""
        return dict(payload) if self.model is None else self.model.model_validate(payload)


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


def _dumps(model: pydantic.BaseModel, name: str) -> bool:
    """Whether one field of a validated model can be written as JSON (to name the fields that cannot)."""
    try:
        model.model_dump(mode="json", include={name})
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
        return False
    return True


def _positional_count(handler: Callable[..., Any]) -> int:
    params = inspect.signature(handler).parameters.values()
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _payload_model(handler: Callable[..., Any]) -> type[pydantic.BaseModel] | None:
    params = [p for p in inspect.signature(handler).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not params:
        raise InvalidJobOptions(f"handler {handler!r} must take the payload as its first parameter")
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
    allows_extra, fields, nesting = _accepted_keys(model)
    if allows_extra:
        return []
    unknown: list[str] = []
    for key, value in payload.items():
        name = key if type(key) is str else str(key)
        accepting = fields.get(name)
        if accepting is None:
            unknown.append(f"{prefix}{key}")
        elif name in nesting:  # only a field whose annotation holds a model can hide unknown keys
            unknown += _unknown_nested(accepting.annotation, value, f"{prefix}{key}")
    return sorted(unknown)


@functools.lru_cache(maxsize=1024)
def _accepted_keys(model: type[pydantic.BaseModel]) -> tuple[bool, dict[str, Any], frozenset[str]]:
    """Per model, once: (extra keys allowed, every key a field accepts -> its FieldInfo, the keys whose
    annotation holds a model somewhere). Models are classes, fixed once defined: safe to cache."""
    if model.model_config.get("extra") in ("allow", "ignore"):
        return True, {}, frozenset()
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        fields[name] = info
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                fields[alias] = info
    return False, fields, frozenset(key for key, info in fields.items() if _holds_model(info.annotation))


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return True
    return any(_holds_model(arg) for arg in typing.get_args(annotation))


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
