"""HTTP services: endpoints called by POST on a plan, each one a durable schedule of the built-in kind.

```python
from finejobs.services import http_service, load_services, declare_services
http_service(queue, "sync-devices", endpoint="https://api.example/sync", parameters={"batch": 50},
             timeout=30, allow_concurrency=False,
             plan={"period": "interval", "intervals": {"on_success": 60, "on_idle": 600, "on_error": 120}})
declare_services(queue, load_services("services.json"))   # the Linkcare JSON array, or TOML [[services]]
```
A service named ``N`` is the schedule ``service:N`` (kind ``finejobs.http_service``, payload: the call).
Interval plans are ``Adaptive`` rules (the wait after a run ends is chosen by its outcome), daily plans
``DailyAt(time, tz)``. ``allow_concurrency: false`` is overlap ``skip``: no new call while one is unfinished,
whichever daemon runs it (one schedule row for all); the call itself never outlives ``timeout``.
A file is checked as a whole: ServiceFileError lists every bad field by its path (``[2].execution_plan.time``,
``services[2].timeout`` in TOML) and the line of a syntax error; nothing is declared unless all is valid.
See docs/services.md.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic

from finejobs.errors import ConfigurationError, FinejobsError
from finejobs.http_runner import KIND, ServiceCall, mask_endpoint, run_service
from finejobs.retry import Retry
from finejobs.scheduler import ScheduleSpec
from finejobs.schedules import Adaptive, DailyAt, Rule

if TYPE_CHECKING:
    from finejobs.queue import Queue

PREFIX = "service:"
MAX_NAME_CHARS = 190  # the schedule name (200 characters) less the prefix
MAX_TIMEOUT = 86_400.0  # a day
MAX_INTERVAL = 100 * 365 * 86_400.0
DEFAULT_TIMEOUT = 30.0
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ServiceFileError(ConfigurationError):
    """A service definition (or a whole file of them) was refused; ``problems`` names every bad field."""

    def __init__(self, where: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{where}: refused, nothing scheduled ({n} problem{'s' if n != 1 else ''}): "
                         + "; ".join(self.problems))


# ---------------------------------------------------------------- the file format, as pydantic models


def _seconds(value: Any) -> float:
    """A number of seconds, or a duration such as ``90s``, ``5m``, ``1h30m``, ``2d``."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds or a duration such as '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            position, seconds = 0, 0.0
            for match in _DURATION.finditer(text):
                if match.start() != position:
                    break
                seconds += float(match.group(1)) * _UNIT[match.group(2)]
                position = match.end()
            if position == 0 or position != len(text):
                raise ValueError(f"{value!r} is not a duration (seconds, or e.g. 90s, 5m, 1h30m, 2d)")
    else:
        raise ValueError("must be a number of seconds or a duration such as '5m'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be zero or more seconds")
    if seconds > MAX_INTERVAL:
        raise ValueError("is over the limit of 100 years")
    return seconds


Seconds = Annotated[float, pydantic.BeforeValidator(_seconds)]


class Intervals(pydantic.BaseModel):
    """The wait after a run ends, by its outcome. on_idle and on_error default to on_success, on_timeout
    to on_error."""

    model_config = pydantic.ConfigDict(extra="forbid")

    on_success: Seconds
    on_idle: Seconds | None = None
    on_error: Seconds | None = None
    on_timeout: Seconds | None = None


class ExecutionPlan(pydantic.BaseModel):
    """``daily`` at ``time`` (hh:mm or hh:mm:ss) in ``timezone`` (IANA, default UTC), or ``interval``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    period: Literal["daily", "interval"]
    timezone: str | None = None
    time: str | None = None
    intervals: Intervals | None = None

    @pydantic.field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as Europe/Madrid)") from None
        return value

    @pydantic.field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _TIME.match(value):
            raise ValueError(f"{value!r} is not a time of day hh:mm or hh:mm:ss (00:00 to 23:59:59)")
        return value

    def rule(self) -> Rule:
        """The finejobs rule of this plan (checked complete: see ``problems``)."""
        if self.period == "daily":
            assert self.time is not None
            return DailyAt(self.time, tz=self.timezone or "UTC")
        assert self.intervals is not None
        i = self.intervals

        def delta(seconds: float | None) -> timedelta | None:
            return None if seconds is None else timedelta(seconds=seconds)

        success = delta(i.on_success)
        assert success is not None
        return Adaptive(on_success=success, on_idle=delta(i.on_idle), on_error=delta(i.on_error),
                        on_timeout=delta(i.on_timeout))

    def problems(self) -> list[tuple[str, str]]:
        """What a valid-looking plan still lacks, as (field, why)."""
        if self.period == "daily" and self.time is None:
            return [("time", "required for a daily plan (hh:mm or hh:mm:ss)")]
        if self.period == "interval" and self.intervals is None:
            return [("intervals", "required for an interval plan (on_success, on_idle, on_error, on_timeout)")]
        return []


class ServiceDefinition(pydantic.BaseModel):
    """One external service, as Linkcare's daemon configuration describes it."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: str = pydantic.Field(min_length=1, max_length=MAX_NAME_CHARS)
    description: str = pydantic.Field(default="", max_length=2000)
    endpoint: str
    parameters: dict[str, Any] = pydantic.Field(default_factory=dict)
    timeout: Seconds = DEFAULT_TIMEOUT
    allow_concurrency: pydantic.StrictBool = False
    execution_plan: ExecutionPlan

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must not be blank nor hold control characters")
        return value

    @pydantic.field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        try:
            parts = httpx_url(value)
        except ValueError as exc:
            raise ValueError(f"not a usable URL: {exc}") from None
        if parts[0] not in ("http", "https") or not parts[1]:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {mask_endpoint(value)!r}")
        return value

    @pydantic.field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= MAX_TIMEOUT:
            raise ValueError(f"must be over 0 and at most {MAX_TIMEOUT:g} seconds (a day)")
        return value

    @property
    def schedule_name(self) -> str:
        return PREFIX + self.name

    def call(self) -> ServiceCall:
        return ServiceCall(service=self.name, endpoint=self.endpoint, parameters=self.parameters,
                           timeout=self.timeout)

    def rule(self) -> Rule:
        return self.execution_plan.rule()

    def schedule_options(self) -> dict[str, Any]:
        """``queue.schedule`` options: no retries (the plan decides when to call again), overlap from
        allow_concurrency."""
        return {"description": self.description, "max_attempts": 1,
                "overlap": "allow" if self.allow_concurrency else "skip", "misfire": "coalesce"}


def httpx_url(value: str) -> tuple[str, str]:
    """(scheme, host) of a URL as httpx reads it; ValueError when it cannot."""
    import httpx

    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return url.scheme, url.host


# ---------------------------------------------------------------- reading files


def load_services(path: str | Path) -> list[ServiceDefinition]:
    """The services of a JSON file (Linkcare's array) or a TOML file (``[[services]]`` tables), all valid,
    or ServiceFileError naming every problem (and the line of a syntax error)."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceFileError(where, [f"cannot read the file: {exc}"]) from None
    suffix, start = Path(path).suffix.lower(), text.lstrip()
    toml = suffix == ".toml" or (suffix != ".json" and (start.startswith("[[") or not start.startswith("[")))
    if toml:
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ServiceFileError(where, [_toml_error(exc, text)]) from None
        if set(data) - {"services"}:
            extra = ", ".join(sorted(set(data) - {"services"}))
            raise ServiceFileError(where, [f"{extra}: unknown top-level key(s): a TOML services file holds "
                                           "[[services]] tables only"])
        return parse_services(data.get("services", []), where=where, root="services")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServiceFileError(where, [f"JSON syntax error at line {exc.lineno} column {exc.colno}: {exc.msg}"]) \
            from None
    return parse_services(data, where=where)


def _toml_error(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """``TOML syntax error at line L column C: why`` (Python 3.11's tomllib puts the place in its message)."""
    message = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        return f"TOML syntax error at line {found.group(1)} column {found.group(2)}: {message[:found.start()]}"
    if message.endswith("(at end of document)"):
        why = message.removesuffix("(at end of document)").strip()
        return f"TOML syntax error at line {text.count(chr(10)) + 1} (the end of the file): {why}"
    return f"TOML syntax error: {message}"


def parse_services(items: Any, *, where: str = "services", root: str = "") -> list[ServiceDefinition]:
    """Validate a list of service definitions (mappings) as a whole."""
    if not isinstance(items, list):
        raise ServiceFileError(where, [f"{root or '<root>'}: expected a list of services, got "
                                       f"{type(items).__name__}"])
    problems: list[str] = []
    found: list[ServiceDefinition] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        prefix = f"{root}[{i}]"
        definition = _one(item, prefix, problems)
        if definition is None:
            continue
        if definition.name in seen:
            first = seen[definition.name]
            problems.append(f"{prefix}.name: {definition.name!r} is already the name of {root}[{first}]")
            continue
        seen[definition.name] = i
        found.append(definition)
    if problems:
        raise ServiceFileError(where, problems)
    return found


def _one(item: Any, prefix: str, problems: list[str]) -> ServiceDefinition | None:
    try:
        definition = ServiceDefinition.model_validate(item)
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{_path(prefix, err['loc'])}: {_message(err)}")
        return None
    bad = [f"{prefix}.execution_plan.{field}: {why}" for field, why in definition.execution_plan.problems()]
    if not bad:
        try:
            definition.rule()
        except FinejobsError as exc:
            bad.append(f"{prefix}.execution_plan: {exc}")
    problems += bad
    return None if bad else definition


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out or "<root>"


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


# ---------------------------------------------------------------- declaring them on a queue


def register_kind(queue: Queue) -> None:
    """Register the built-in kind ``finejobs.http_service`` on ``queue`` (once)."""
    if KIND not in queue.kinds:
        queue.job(KIND, retry=Retry(max_attempts=1))(run_service)


def declare(queue: Queue, definition: ServiceDefinition) -> ScheduleSpec:
    """Declare one checked service as the schedule ``service:<name>`` (workers upsert it at start)."""
    register_kind(queue)
    return queue.schedule(definition.schedule_name, KIND, definition.rule(),
                          payload=definition.call().model_dump(), **definition.schedule_options())


def declare_services(queue: Queue, definitions: Sequence[ServiceDefinition]) -> list[ScheduleSpec]:
    """Declare every service (all or none: a clash with a schedule declared already refuses them all)."""
    taken = [d.schedule_name for d in definitions if d.schedule_name in queue.declared_schedules]
    if taken:
        raise ServiceFileError("services", [f"{name}: already declared on this queue" for name in taken])
    specs: list[ScheduleSpec] = []
    try:
        for definition in definitions:
            specs.append(declare(queue, definition))
    except BaseException:
        for spec in specs:
            queue.declared_schedules.pop(spec.name, None)
        raise
    return specs


def http_service(queue: Queue, name: str, *, endpoint: str, plan: Mapping[str, Any] | ExecutionPlan,
                 parameters: Mapping[str, Any] | None = None, timeout: float | str = DEFAULT_TIMEOUT,
                 allow_concurrency: bool = False, description: str = "") -> ScheduleSpec:
    """Declare an HTTP service from Python (``queue.http_service(...)``): the same fields and checks as a
    file's. ``plan`` is an execution plan: ``{"period": "daily", "time": "06:00", "timezone": "Europe/Madrid"}``
    or ``{"period": "interval", "intervals": {"on_success": 60, "on_idle": "10m", ...}}``."""
    raw = {"name": name, "description": description, "endpoint": endpoint,
           "parameters": dict(parameters) if parameters is not None else {}, "timeout": timeout,
           "allow_concurrency": allow_concurrency,
           "execution_plan": plan.model_dump() if isinstance(plan, ExecutionPlan) else plan}
    problems: list[str] = []
    definition = _one(raw, "", problems)
    if definition is None:
        raise ServiceFileError(f"service {name!r}", [p.lstrip(".") for p in problems])
    if definition.schedule_name in queue.declared_schedules:
        raise ServiceFileError(f"service {name!r}", [f"{definition.schedule_name}: already declared on this queue"])
    return declare(queue, definition)


def describe(definition: ServiceDefinition) -> dict[str, Any]:
    """A service as ``services check`` shows it (endpoint masked)."""
    return {"name": definition.name, "schedule": definition.schedule_name, "description": definition.description,
            "endpoint": mask_endpoint(definition.endpoint), "timeout_seconds": definition.timeout,
            "allow_concurrency": definition.allow_concurrency, "plan": definition.rule().describe()}
