"""The CLI's shared plumbing: URLs and the passwords in them, opening queues, tables, parameter types, the
job filter options. Every command module imports from here; this module imports none of them."""

from __future__ import annotations

import getpass
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from finejobs import ConfigurationError, EnqueueError, InvalidJobOptions, Job, JobState, Queue
from finejobs.admin import Admin
from finejobs.filters import MAX_FILTER_TEXT, JobFilter
from finejobs.limits import check_duration, check_text, check_time, log_safe
from finejobs.sharding import validate_shard_name, validate_shard_pattern
from finejobs.store import mask_url, url_secrets

URL_ENV = "FINEJOBS_DATABASE_URL"
MAP_ENV = "FINEJOBS_SHARD_MAP"
APP_ENV = "FINEJOBS_APP"
DEBUG_ENV = "FINEJOBS_DEBUG"
MAX_KIND_CHARS = 200  # the job table's check on kind
MAX_JOB_ID = 2**63 - 1

F = TypeVar("F", bound=Callable[..., Any])

# Passwords seen in database URLs this run: scrubbed from every message we print and every worker log line.
_secrets: set[str] = set()


# ---------------------------------------------------------------- passwords


def remember_secret(url: str) -> None:
    """Remember every password in ``url`` (user-info, query string, conninfo; as written, decoded, and as the
    store renders the URL again): store.url_secrets."""
    if isinstance(url, str):
        _secrets.update(url_secrets(url))


def scrub(text: str) -> str:
    """Mask URL passwords, and any password seen this run that stands as a token of its own."""
    text = mask_url(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


class ScrubbingFormatter(logging.Formatter):
    """The worker's log lines (tracebacks included), passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def fail(message: str, code: int) -> int:
    """One line on stderr: passwords masked, control characters escaped, capped (limits.log_safe)."""
    one_line = " ".join(part.strip() for part in scrub(message).splitlines() if part.strip())
    click.echo(f"finejobs: error: {log_safe(one_line)}", err=True)
    return code


# ---------------------------------------------------------------- where the database is


@dataclass
class Root:
    """The group's options, for every command."""

    database_url: str | None = None
    shard_map: str | None = None


def check_url_text(url: str, what: str) -> str:
    """A URL or path option must be text PostgreSQL and the OS can take (no NUL, no lone surrogate)."""
    try:
        return check_text(what, url)
    except InvalidJobOptions as exc:
        raise ConfigurationError(str(exc)) from None


def database_url(ctx: click.Context, value: str | None, *, required: bool = True) -> str | None:
    """The URL from this command's option, else the group's option, else FINEJOBS_DATABASE_URL."""
    root = ctx.find_object(Root)
    url = value or (root.database_url if root else None) or os.environ.get(URL_ENV) or None
    if url is None:
        if required:
            raise ConfigurationError(f"no database URL: pass --database-url or set {URL_ENV} "
                                     f"(or a shard map: --shard-map FILE or {MAP_ENV})")
        return None
    remember_secret(url)
    return check_url_text(url, "database URL")


def _database_url_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        remember_secret(value)
        check_url_text(value, "database URL")
    return value


def database_url_option(function: F) -> F:
    """``--database-url``: accepted by the group and by every command."""
    return click.option(
        "--database-url", "database_url", metavar="URL", default=None, callback=_database_url_callback,
        expose_value=True,
        help=f"PostgreSQL URL, e.g. postgresql://user@host:5432/db [default: ${URL_ENV}]. "
        f"Prefer the environment variable for URLs with a password (command lines are visible to other users).",
    )(function)


def database_option(function: F) -> F:
    """``--database NAME``: which database of the shard map (job ids are per database)."""
    return click.option("--database", "database", metavar="NAME", default=None,
                        help="With a shard map: the database holding the job(s) [default: the one that has it, "
                             "or every one].")(function)


def shard_map_path(ctx: click.Context) -> str | None:
    root = ctx.find_object(Root)
    path = (root.shard_map if root else None) or os.environ.get(MAP_ENV) or None
    return None if path is None else check_url_text(path, "shard map path")


def names_a_database(ctx: click.Context, value: str | None) -> bool:
    """Whether the command line or the environment names a database (a URL or a shard map)."""
    root = ctx.find_object(Root)
    return bool(value or (root and root.database_url) or os.environ.get(URL_ENV) or shard_map_path(ctx))


def configure(ctx: click.Context, queue: Queue, url: str | None, **options: Any) -> None:
    """Point an app's queue at what the command line names: a URL (--database-url, the group's, then
    FINEJOBS_DATABASE_URL), else a shard map (--shard-map, FINEJOBS_SHARD_MAP); else keep the app's own."""
    root = ctx.find_object(Root)
    explicit = url or (root.database_url if root else None)
    shard_map = shard_map_path(ctx)
    if explicit is None and shard_map is not None:
        queue.configure(shard_map=shard_map, **options)
    else:
        queue.configure(url=database_url(ctx, url, required=False), **options)
    remember_queue_secrets(queue)


def remember_queue_secrets(queue: Queue) -> None:
    for name in queue.databases:
        remember_secret(queue.shard_map.url(name))


def check_schemas(queue: Queue, databases: Sequence[str] | None = None) -> None:
    """Every database (or those named) answers and is migrated, or one line says which does not."""
    for name in databases if databases is not None else queue.databases:
        queue.store_of(name).check_schema()


@contextmanager
def queue_from(ctx: click.Context, url: str | None, *, check: bool = True, app: str | None = None) -> Iterator[Queue]:
    """A Queue on what the command line names (a URL or a shard map), every database's schema checked; its
    connections are closed afterwards. With ``app``, the app's queue, pointed there (its kinds known)."""
    if app is not None:
        queue = load_app(app)
        configure(ctx, queue, url)
    else:
        root = ctx.find_object(Root)
        explicit = url or (root.database_url if root else None)
        shard_map = shard_map_path(ctx)
        if explicit is None and shard_map is not None:
            queue = Queue(shard_map=shard_map)
        else:
            found = database_url(ctx, url)
            assert found is not None
            queue = Queue(found)
    try:
        remember_queue_secrets(queue)
        if check:
            check_schemas(queue)
        yield queue
    finally:
        queue.close()


def actor() -> str:
    """Who acts, for the audit log: ``cli:<login name>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in the environment nor the password database
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"[:200]


@contextmanager
def admin_from(ctx: click.Context, url: str | None, *, app: str | None = None) -> Iterator[Admin]:
    """The operations API on what the command line names, acting as ``cli:<user>``."""
    with queue_from(ctx, url, app=app) as queue:
        yield Admin(queue, actor=actor())


# ---------------------------------------------------------------- --app


def load_app(path: str) -> Queue:
    """Import ``module:attribute`` (or ``module``, whose ``queue`` attribute is used) as a finejobs.Queue.

    The current directory is put first on sys.path, as uvicorn does, so local modules import.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module_name, colon, attr = path.strip().partition(":")
    if not module_name or module_name.startswith(".") or (colon and not attr):
        raise ConfigurationError(f"bad --app {path!r}: expected MODULE:ATTRIBUTE, e.g. myapp.jobs:queue")
    attr = attr or "queue"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigurationError(
                f"bad --app {path!r}: no module named {module_name!r} (searched from {cwd})"
            ) from None
        raise ConfigurationError(f"bad --app {path!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"bad --app {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"bad --app {path!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(obj, Queue):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise ConfigurationError(f"bad --app {path!r}: {module_name}:{attr} is {what}, not a finejobs.Queue")
    return obj


# ---------------------------------------------------------------- output


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def ts(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(value: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - value).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    return f"{seconds / 60:.0f}m ago" if seconds < 7200 else f"{seconds / 3600:.0f}h ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *rows]]
    return "\n".join(lines)


def job_json(job: Job) -> dict[str, Any]:
    """``job.to_json()`` with passwords masked in its errors (a handler's exception may quote a URL)."""
    data = job.to_json()
    for error in data["errors"]:
        for key in ("message", "traceback"):
            if isinstance(error.get(key), str):
                error[key] = scrub(error[key])
    return data


# ---------------------------------------------------------------- parameter types and checks


if TYPE_CHECKING:
    _DateTimeParam = click.ParamType[datetime, Any]  # generic from click 8.3 on
    _FloatParam = click.ParamType[float, Any]
else:
    _DateTimeParam = click.ParamType
    _FloatParam = click.ParamType


class AwareDateTime(_DateTimeParam):
    """An ISO 8601 datetime that carries a timezone (``2026-11-22T08:00:00+01:00`` or ``...Z``), within the
    supported time range (limits.check_time: years 1 to 9999 in UTC, a few days from each end)."""

    name = "ISO-DATETIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            parsed = value
        else:
            try:
                parsed = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not an ISO 8601 datetime (e.g. 2026-11-22T08:00:00Z)", param, ctx)
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.fail(f"{value!r} has no timezone: add one, e.g. {parsed.isoformat()}Z or "
                      f"{parsed.isoformat()}+01:00", param, ctx)
        try:
            check_time(param.name if param is not None and param.name else "the time", parsed)
        except InvalidJobOptions as exc:
            self.fail(str(exc), param, ctx)
        return parsed


class Seconds(_FloatParam):
    """A duration in seconds, finite, from ``low`` (excluded if ``low_open``) to ``high`` (limits.check_duration)."""

    name = "SECONDS"

    def __init__(self, low: float, high: float, *, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            seconds = None
        if seconds is None:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        try:
            check_duration("seconds", seconds, minimum=timedelta(seconds=self.low), strict=self.low_open,
                           most=timedelta(seconds=self.high))
        except InvalidJobOptions:
            span = (f"over {self.low:g} and up to {self.high:g}" if self.low_open
                    else f"from {self.low:g} to {self.high:g}")
            self.fail(f"{value!r} is out of range: give a number of seconds {span}", param, ctx)
        return seconds


def text_option(what: str, *, max_chars: int | None = None,
                max_bytes: int | None = None) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback refusing text with NUL characters or lone surrogates, or over a limit (limits.check_text)."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            try:
                check_text(what, value, max_chars=max_chars, max_bytes=max_bytes)
            except InvalidJobOptions as exc:
                raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        return value

    return check


def check_shard(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    for name in value if isinstance(value, tuple) else (value,):
        if name is None:
            continue
        try:
            validate_shard_name(name)
        except EnqueueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def check_shard_pattern(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    for pattern in value:
        try:
            validate_shard_pattern(pattern)
        except EnqueueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def check_job_id(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_JOB_ID:
        raise click.BadParameter(f"{value} is not a job id (ids are 1 to {MAX_JOB_ID})", ctx=ctx, param=param)
    return value


# ---------------------------------------------------------------- which jobs: the filter options

FILTER_FIELDS = ("state", "kind", "shard", "schedule", "error", "created_after", "created_before",
                 "finished_after", "finished_before")


def filter_options(function: F) -> F:
    """The options of a finejobs.JobFilter (every one given must match), passed as keyword arguments."""
    options = [
        click.option("--state", type=click.Choice([s.value for s in JobState]), default=None, help="Only this state."),
        click.option("--kind", default=None, callback=text_option("kind", max_chars=MAX_KIND_CHARS),
                     help="Only this job kind."),
        click.option("--shard", default=None, callback=check_shard, help="Only this shard."),
        click.option("--schedule", default=None, metavar="NAME",
                     callback=text_option("schedule", max_chars=MAX_FILTER_TEXT),
                     help="Only the jobs this schedule made."),
        click.option("--error", default=None, metavar="TEXT", callback=text_option("error", max_chars=MAX_FILTER_TEXT),
                     help="Only jobs whose last error message holds TEXT (case-insensitive)."),
        click.option("--created-after", type=AwareDateTime(), default=None, help="Created at or after (ISO 8601)."),
        click.option("--created-before", type=AwareDateTime(), default=None, help="Created before (ISO 8601)."),
        click.option("--finished-after", type=AwareDateTime(), default=None, help="Finished at or after (ISO 8601)."),
        click.option("--finished-before", type=AwareDateTime(), default=None, help="Finished before (ISO 8601)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def job_filter(options: dict[str, Any], database: str | None = None) -> JobFilter:
    """The JobFilter of the options given (pops them from ``options``); a contradiction is a usage error."""
    values = {name: options.pop(name) for name in FILTER_FIELDS}
    try:
        return JobFilter(**values, database=database)
    except InvalidJobOptions as exc:
        raise click.UsageError(str(exc)) from None
