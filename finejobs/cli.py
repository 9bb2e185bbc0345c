"""The ``finejobs`` command line: migrate, run workers, enqueue, inspect and operate jobs.

```
finejobs [--database-url URL] migrate
finejobs worker --app MODULE:ATTR [--shard NAME ...] [--concurrency N] [--poll-interval S] ...
finejobs enqueue KIND --payload JSON [--app MODULE:ATTR] [--shard S] [--run-at ISO] ...
finejobs jobs list | show ID | retry ID | cancel ID
finejobs stats
finejobs shards add NAME... | list | drop NAME | move NAME --to DATABASE
```
The database URL comes from ``--database-url`` (on the group or on any command) or from the environment
variable FINEJOBS_DATABASE_URL. With several databases, ``--shard-map FILE`` (or FINEJOBS_SHARD_MAP) names
a TOML shard map instead: migrate, jobs and stats then cover every database in it.
Every error ends as one line on stderr, ``finejobs: error: ...``, with exit status 2 for usage errors and
1 otherwise; passwords in URLs are never printed. Set FINEJOBS_DEBUG=1 to get the traceback of an
unexpected error.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from finejobs import __version__
from finejobs.errors import ConfigurationError, EnqueueError, FinejobsError, InvalidJobOptions
from finejobs.jobs import Job, JobState
from finejobs.limits import (
    MAX_ATTEMPTS,
    MAX_CONCURRENCY,
    MAX_MESSAGE_CHARS,
    MAX_PAYLOAD_DEPTH,
    MAX_POOL_SIZE,
    MAX_UNIQUE_KEY_BYTES,
    MAX_WORKER_GRACE,
    MAX_WORKER_LEASE,
    MAX_WORKER_POLL,
    check_duration,
    check_text,
    check_time,
    log_safe,
)
from finejobs.queue import Queue
from finejobs.retry import Retry
from finejobs.sharding import validate_shard_name, validate_shard_pattern
from finejobs.store import JobStore, Stats, available_migrations, mask_url, url_secrets

URL_ENV = "FINEJOBS_DATABASE_URL"
MAP_ENV = "FINEJOBS_SHARD_MAP"
APP_ENV = "FINEJOBS_APP"
DEBUG_ENV = "FINEJOBS_DEBUG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

log = logging.getLogger("finejobs.cli")

F = TypeVar("F", bound=Callable[..., Any])

# Bounds of the worker's options (documented in their --help): the Worker's own, from finejobs.limits.
MAX_POLL_INTERVAL = MAX_WORKER_POLL.total_seconds()
MAX_SHUTDOWN_GRACE = MAX_WORKER_GRACE.total_seconds()
MAX_LEASE = MAX_WORKER_LEASE.total_seconds()
MAX_LIST_LIMIT = 1_000_000  # jobs list --limit
MAX_KIND_CHARS = 200  # the job table's check on kind

# Passwords seen in database URLs this run: scrubbed from every message we print and every worker log line.
_secrets: set[str] = set()


# ---------------------------------------------------------------- shared plumbing


@dataclass
class _Root:
    database_url: str | None = None
    shard_map: str | None = None


def _remember_secret(url: str) -> None:
    """Remember every password in ``url`` (user-info, query string, conninfo; as written, decoded, and as the
    store renders the URL again): store.url_secrets."""
    if isinstance(url, str):
        _secrets.update(url_secrets(url))


def _scrub(text: str) -> str:
    """Mask URL passwords, and any password seen this run that stands as a token of its own."""
    text = mask_url(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


class _ScrubbingFormatter(logging.Formatter):
    """The worker's log lines (tracebacks included), passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        return _scrub(super().format(record))


def _check_url_text(url: str, what: str) -> str:
    """A URL or path option must be text PostgreSQL and the OS can take (no NUL, no lone surrogate)."""
    try:
        return check_text(what, url)
    except InvalidJobOptions as exc:
        raise ConfigurationError(str(exc)) from None


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _database_url(ctx: click.Context, value: str | None, *, required: bool = True) -> str | None:
    """The URL from this command's option, else the group's option, else FINEJOBS_DATABASE_URL."""
    root = ctx.find_object(_Root)
    url = value or (root.database_url if root else None) or os.environ.get(URL_ENV) or None
    if url is None:
        if required:
            raise ConfigurationError(f"no database URL: pass --database-url or set {URL_ENV} "
                                     f"(or a shard map: --shard-map FILE or {MAP_ENV})")
        return None
    _remember_secret(url)
    return _check_url_text(url, "database URL")


def _database_url_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        _remember_secret(value)
        _check_url_text(value, "database URL")
    return value


def database_url_option(function: F) -> F:
    """``--database-url``: accepted by the group and by every command."""
    return click.option(
        "--database-url",
        "database_url",
        metavar="URL",
        default=None,
        callback=_database_url_callback,
        expose_value=True,
        help=f"PostgreSQL URL, e.g. postgresql://user@host:5432/db [default: ${URL_ENV}]. "
        f"Prefer the environment variable for URLs with a password (command lines are visible to other users).",
    )(function)


def database_option(function: F) -> F:
    """``--database NAME``: which database of the shard map (job ids are per database)."""
    return click.option("--database", "database", metavar="NAME", default=None,
                        help="With a shard map: the database holding the job [default: the one that has it].")(function)


def _store(queue: Queue) -> JobStore:
    """The queue's store (an unparsable URL raises ConfigurationError there)."""
    return queue.store


def _shard_map_path(ctx: click.Context) -> str | None:
    root = ctx.find_object(_Root)
    path = (root.shard_map if root else None) or os.environ.get(MAP_ENV) or None
    return None if path is None else _check_url_text(path, "shard map path")


def _configure(ctx: click.Context, queue: Queue, database_url: str | None, **options: Any) -> None:
    """Point an app's queue at what the command line names: a URL (--database-url, the group's, then
    FINEJOBS_DATABASE_URL), else a shard map (--shard-map, FINEJOBS_SHARD_MAP); else keep the app's own."""
    root = ctx.find_object(_Root)
    explicit = database_url or (root.database_url if root else None)
    shard_map = _shard_map_path(ctx)
    if explicit is None and shard_map is not None:
        queue.configure(shard_map=shard_map, **options)
    else:
        queue.configure(url=_database_url(ctx, database_url, required=False), **options)
    for name in queue.databases:
        _remember_secret(queue.shard_map.url(name))


@contextmanager
def _queue_from(ctx: click.Context, database_url: str | None, *, check: bool = True) -> Iterator[Queue]:
    """A throwaway Queue on what the command line names (a URL or a shard map), every database's schema
    checked; its connections are closed afterwards."""
    root = ctx.find_object(_Root)
    explicit = database_url or (root.database_url if root else None)
    shard_map = _shard_map_path(ctx)
    if explicit is None and shard_map is not None:
        queue = Queue(shard_map=shard_map)
    else:
        url = _database_url(ctx, database_url)
        assert url is not None
        queue = Queue(url)
    try:
        for name in queue.databases:
            _remember_secret(queue.shard_map.url(name))
            if check:
                queue.store_of(name).check_schema()
        yield queue
    finally:
        queue.close()


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _ts(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *rows]]
    return "\n".join(lines)


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


def _text_option(what: str, *, max_chars: int | None = None,
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


def _check_shard(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    values = value if isinstance(value, tuple) else (value,)
    for name in values:
        if name is None:
            continue
        try:
            validate_shard_name(name)
        except EnqueueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _check_shard_pattern(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    for pattern in value:
        try:
            validate_shard_pattern(pattern)
        except EnqueueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


_MAX_JOB_ID = 2**63 - 1


def _check_job_id(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if not 1 <= value <= _MAX_JOB_ID:
        raise click.BadParameter(f"{value} is not a job id (ids are 1 to {_MAX_JOB_ID})", ctx=ctx, param=param)
    return value


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


# ---------------------------------------------------------------- the group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@database_url_option
@click.option("--shard-map", "shard_map", metavar="FILE", default=None,
              help=f"A TOML shard map placing shards on several databases [default: ${MAP_ENV}]; "
                   "see docs/sharding.md. --database-url, when given, wins.")
@click.version_option(__version__, prog_name="finejobs")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, shard_map: str | None) -> None:
    """finejobs: durable background jobs on PostgreSQL, one job per work item.

    \b
    Typical use:
      export FINEJOBS_DATABASE_URL=postgresql://user@localhost:5432/app
      finejobs migrate
      finejobs worker --app myapp.jobs:queue --concurrency 20
      finejobs enqueue send.email --payload '{"to": "a@example.com"}' --app myapp.jobs:queue
      finejobs jobs list --state failed
      finejobs stats

    Errors are printed as one line on stderr; the exit status is 2 for usage errors and 1 for
    every other error. Set FINEJOBS_DEBUG=1 to see the traceback of an unexpected error.
    """
    ctx.obj = _Root(database_url=database_url, shard_map=shard_map)


# ---------------------------------------------------------------- migrate


@cli.command()
@database_url_option
@click.pass_context
def migrate(ctx: click.Context, database_url: str | None) -> None:
    """Create or upgrade the finejobs tables (in every database of the shard map).

    Applies the migrations this finejobs ships that the database lacks, in order, and prints each one
    it applied, or "up to date". Safe to run from several processes at once (an advisory lock
    serialises them).
    """
    names = {m.version: m.name for m in available_migrations()}
    with _queue_from(ctx, database_url, check=False) as queue:
        several = len(queue.databases) > 1
        for database in queue.databases:
            applied = queue.store_of(database).migrate()
            where = f"{database}: " if several else ""
            if not applied:
                click.echo(f"{where}up to date (schema version {max(names)})")
            for version in applied:
                click.echo(f"{where}applied {version:04d}_{names.get(version, '?')}")


# ---------------------------------------------------------------- worker


@cli.command()
@click.option("--app", envvar=APP_ENV, show_envvar=True, required=True, metavar="MODULE:ATTR",
              help="The finejobs.Queue holding your job kinds, e.g. myapp.jobs:queue (a bare module "
                   "means its attribute 'queue'). Imported with the current directory on sys.path.")
@click.option("--shard", "shards", multiple=True, metavar="PATTERN", callback=_check_shard_pattern,
              help="Serve only this shard, or the shards a glob matches ('district-*', matched again as "
                   "shards appear); repeat for several. Default: every shard.")
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=10, show_default=True,
              help="How many jobs run at once (handler threads).")
@click.option("--poll-interval", type=Seconds(0, MAX_POLL_INTERVAL, low_open=True), default=1.0, show_default=True,
              help=f"How often to look for due jobs when no notification arrives: over 0, at most "
                   f"{MAX_POLL_INTERVAL:g} (an hour).")
@click.option("--shutdown-grace", type=Seconds(0, MAX_SHUTDOWN_GRACE), default=30.0, show_default=True,
              help="On SIGTERM/SIGINT, how long running jobs may finish before they are given back: 0 to "
                   f"{MAX_SHUTDOWN_GRACE:g} (a day).")
@click.option("--lease", type=Seconds(0.5, MAX_LEASE), default=30.0, show_default=True,
              help="How long a claimed job stays this worker's without a heartbeat; after a crash, how long "
                   f"until another worker may run it again: 0.5 to {MAX_LEASE:g} (a day).")
@click.option("--pool-size", type=click.IntRange(2, MAX_POOL_SIZE), default=5, show_default=True,
              help="Database connections this worker may hold (plus one for LISTEN).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True, help="Log level; logs go to stdout, one line per job outcome.")
@database_url_option
@click.pass_context
def worker(ctx: click.Context, app: str, shards: tuple[str, ...], concurrency: int, poll_interval: float,
           shutdown_grace: float, lease: float, pool_size: int, log_level: str, database_url: str | None) -> None:
    """Run a worker: claim due jobs of the app's kinds and run them until stopped.

    SIGTERM or SIGINT stops it gracefully: no new jobs are claimed, running jobs get --shutdown-grace
    seconds to finish, and jobs still running after that are given back to the queue (a second
    signal exits at once; their leases bring them back). Exits 0 after a clean stop, 1 if a worker
    service crashed.

    The database URL, when given (--database-url or FINEJOBS_DATABASE_URL), replaces the one the
    app's Queue was created with; so does a shard map (--shard-map or FINEJOBS_SHARD_MAP). With a
    shard map, the worker connects only to the databases that hold its shards (one set of
    --concurrency slots per database).

    \b
    Examples:
      finejobs worker --app myapp.jobs:queue --shard district-3 --concurrency 20
      finejobs worker --app myapp.jobs:queue --shard 'district-*'
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ScrubbingFormatter(LOG_FORMAT))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])  # as before: a no-op if logging is set up
    queue = load_app(app)
    _configure(ctx, queue, database_url, pool_size=pool_size)
    try:
        for name in queue.databases:
            _remember_secret(queue.shard_map.url(name))  # the app's own URLs may carry a password too
        log.info("finejobs %s: app=%s database=%s", __version__, app,
                 ", ".join(f"{n}={_scrub(queue.shard_map.url(n))}" for n in queue.databases)
                 if len(queue.databases) > 1 else _scrub(queue.url))
        _store(queue)
        # Every database the worker will serve answers and is migrated, or one line says which does not
        # (with a shard map, a worker per database would otherwise log its failure with a traceback).
        for name in queue.shard_map.databases_for(list(shards) or None):
            queue.store_of(name).check_schema()
        queue.worker(shards=list(shards) or None, concurrency=concurrency, poll_interval=poll_interval,
                     shutdown_grace=shutdown_grace, lease=timedelta(seconds=lease)).run()
    finally:
        queue.close()
    _exit_if_handlers_linger()


def _exit_if_handlers_linger(join_timeout: float = 0.5) -> None:
    """After a stop, handlers that outlived the grace period were given back: do not wait for them."""
    deadline = time.monotonic() + join_timeout
    lingering = []
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            lingering.append(thread.name)
    if lingering:
        log.warning("exiting with %d handler thread(s) still running (their jobs were given back): %s",
                    len(lingering), ", ".join(lingering))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# ---------------------------------------------------------------- enqueue


@cli.command()
@click.argument("kind", callback=_text_option("job kind name", max_chars=MAX_KIND_CHARS))
@click.option("--payload", default="{}", show_default=True, metavar="JSON",
              help="The payload as JSON ('-' reads it from stdin).")
@click.option("--app", envvar=APP_ENV, show_envvar=True, default=None, metavar="MODULE:ATTR",
              help="Validate the payload through this app's job kind (its model, priority, expiry "
                   "and retry policy apply).")
@click.option("--shard", default=None, metavar="NAME", callback=_check_shard, help="Shard [default: default].")
@click.option("--run-at", type=AwareDateTime(), default=None,
              help="Do not run before this time (ISO 8601 with a timezone).")
@click.option("--expires-at", type=AwareDateTime(), default=None,
              help="Never start after this time (ISO 8601 with a timezone); the job ends 'expired'.")
@click.option("--unique-key", default=None, metavar="KEY",
              callback=_text_option("unique_key", max_bytes=MAX_UNIQUE_KEY_BYTES),
              help="At most one unfinished job per key: if one exists, its id is printed instead "
                   f"(at most {MAX_UNIQUE_KEY_BYTES:,} bytes of UTF-8).")
@click.option("--priority", type=click.IntRange(-32768, 32767), default=None,
              help="Higher runs first [default: the kind's, else 0].")
@click.option("--max-attempts", type=click.IntRange(1, MAX_ATTEMPTS), default=None,
              help="Without --app only: attempts allowed [default: 3]. With --app the kind's retry policy decides.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole job as JSON instead of its id.")
@database_url_option
@click.pass_context
def enqueue(ctx: click.Context, kind: str, payload: str, app: str | None, shard: str | None,
            run_at: datetime | None, expires_at: datetime | None, unique_key: str | None,
            priority: int | None, max_attempts: int | None, as_json: bool, database_url: str | None) -> None:
    """Enqueue one job of KIND and print its id.

    With --app (or FINEJOBS_APP), the payload is validated by the app's job kind, as
    queue.enqueue() does in your code, and the kind's defaults apply.

    Without --app, the kind is not known here: the payload must be a JSON object and is stored as
    given, without validation; the worker validates it when the job runs (a bad payload then fails
    the job). The kind's expiry and priority defaults do not apply, and --max-attempts (default 3)
    replaces its retry limit.

    \b
    Examples:
      finejobs enqueue send.email --payload '{"to": "a@example.com"}' --app myapp.jobs:queue
      finejobs enqueue report.build --payload '{}' --run-at 2026-11-22T08:00:00+01:00
    """
    data = _parse_payload(payload, ctx)
    options: dict[str, Any] = {"shard": shard, "run_at": run_at, "expires_at": expires_at,
                               "unique_key": unique_key, "priority": priority}
    if app is not None:
        if max_attempts is not None:
            raise click.UsageError("--max-attempts applies only without --app (the kind's retry policy decides)",
                                   ctx=ctx)
        queue = load_app(app)
        root = ctx.find_object(_Root)
        if database_url or (root and root.database_url) or os.environ.get(URL_ENV) or _shard_map_path(ctx):
            _configure(ctx, queue, database_url)
        try:
            queue.kind(kind)  # an unknown kind fails before touching the database
            _remember_secret(queue.url)
            for name in queue.databases:
                queue.store_of(name).check_schema()
            job = queue.enqueue(kind, data, **options)
        finally:
            queue.close()
    else:
        with _queue_from(ctx, database_url) as queue:
            _register_untyped(queue, kind, ctx, max_attempts=max_attempts or Retry().max_attempts)
            job = queue.enqueue(kind, data, **options)
    if as_json:
        _echo_json(_job_json(job))
    else:
        click.echo(job.id)


def _parse_payload(text: str, ctx: click.Context) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", ctx=ctx, param_hint="'--payload'") from None
    except RecursionError:  # far deeper than any payload may be
        raise click.BadParameter(f"nested deeper than {MAX_PAYLOAD_DEPTH} levels", ctx=ctx,
                                 param_hint="'--payload'") from None


def _register_untyped(queue: Queue, kind: str, ctx: click.Context, *, max_attempts: int) -> None:
    """Declare ``kind`` on a throwaway queue with a dict payload, so only 'is a JSON object' is checked."""

    def _h(payload: dict) -> None:  # type: ignore[type-arg]  # a bare dict: no pydantic model
        raise RuntimeError("never called: the CLI only enqueues")

    try:
        queue.job(kind, retry=Retry(max_attempts=max_attempts))(_h)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint="'KIND'") from None


# ---------------------------------------------------------------- jobs


@cli.group()
def jobs() -> None:
    """List, show, retry and cancel jobs."""


@jobs.command("list")
@click.option("--state", type=click.Choice([s.value for s in JobState]), default=None, help="Only this state.")
@click.option("--kind", default=None, callback=_text_option("kind", max_chars=MAX_KIND_CHARS),
              help="Only this job kind.")
@click.option("--shard", default=None, callback=_check_shard, help="Only this shard.")
@click.option("--limit", type=click.IntRange(1, MAX_LIST_LIMIT), default=50, show_default=True,
              help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of jobs (every field).")
@database_url_option
@click.pass_context
def jobs_list(ctx: click.Context, state: str | None, kind: str | None, shard: str | None, limit: int,
              as_json: bool, database_url: str | None) -> None:
    """List jobs, newest first, as a table.

    Columns: id, kind, shard, state, attempt/max attempts, run_at (UTC) and the type of the
    last error.
    """
    with _queue_from(ctx, database_url) as queue:
        found = queue.jobs(state=state, kind=kind, shard=shard, limit=limit)
    if as_json:
        _echo_json([_job_json(job) for job in found])
        return
    if not found:
        click.echo("no jobs")
        return
    rows = [[str(j.id), j.kind, j.shard, j.state.value, f"{j.attempt}/{j.max_attempts}", _ts(j.run_at),
             j.errors[-1].error if j.errors else "-"] for j in found]
    click.echo(_table(["ID", "KIND", "SHARD", "STATE", "ATTEMPT", "RUN_AT", "LAST_ERROR"], rows))


@jobs.command("show")
@click.argument("job_id", metavar="ID", type=int, callback=_check_job_id)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@database_option
@database_url_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int, as_json: bool, database: str | None, database_url: str | None) -> None:
    """Show every field of job ID, and each attempt's error with its traceback."""
    with _queue_from(ctx, database_url) as queue:
        job = queue.get(job_id, database=database)
    if as_json:
        _echo_json(_job_json(job))
        return
    click.echo(_describe(job))


def _job_json(job: Job) -> dict[str, Any]:
    """``job.to_json()`` with passwords masked in its errors (a handler's exception may quote a URL)."""
    data = job.to_json()
    for error in data["errors"]:
        for key in ("message", "traceback"):
            if isinstance(error.get(key), str):
                error[key] = _scrub(error[key])
    return data


def _describe(job: Job) -> str:
    def iso(value: datetime | None) -> str:
        return value.isoformat() if value is not None else "-"

    fields = [
        ("id", str(job.id)), ("kind", job.kind), ("shard", job.shard), ("state", job.state.value),
        ("priority", str(job.priority)), ("attempt", f"{job.attempt}/{job.max_attempts}"),
        ("run_at", iso(job.run_at)), ("expires_at", iso(job.expires_at)),
        ("unique_key", job.unique_key or "-"), ("lease_owner", job.lease_owner or "-"),
        ("lease_expires_at", iso(job.lease_expires_at)), ("created_at", iso(job.created_at)),
        ("started_at", iso(job.started_at)), ("finished_at", iso(job.finished_at)),
        ("result", job.result or "-"),
    ]
    if job.schedule_id is not None:
        fields += [("schedule_id", str(job.schedule_id)), ("fire_at", iso(job.fire_at))]
    width = max(len(name) for name, _ in fields) + 1
    lines = [f"{name + ':':<{width}} {value}" for name, value in fields]
    lines.append("payload:")
    lines.extend("  " + line for line in json.dumps(job.payload, indent=2, default=str).splitlines())
    lines.append(f"errors: {len(job.errors)}" if job.errors else "errors: none")
    for err in job.errors:
        worker = f" (worker {err.worker})" if err.worker else ""
        lines.append(f"  attempt {err.attempt} at {err.at.isoformat()}{worker}: {err.error}: {_scrub(err.message)}")
        if err.traceback:
            lines.extend("    " + line for line in _scrub(err.traceback).rstrip().splitlines())
    return "\n".join(lines)


@jobs.command("retry")
@click.argument("job_id", metavar="ID", type=int, callback=_check_job_id)
@database_option
@database_url_option
@click.pass_context
def jobs_retry(ctx: click.Context, job_id: int, database: str | None, database_url: str | None) -> None:
    """Run a failed, expired or cancelled job again now, allowing one more attempt."""
    with _queue_from(ctx, database_url) as queue:
        job = queue.retry(job_id, database=database)
    click.echo(f"job {job.id} is {job.state.value} (attempt {job.attempt}/{job.max_attempts})")


@jobs.command("cancel")
@click.argument("job_id", metavar="ID", type=int, callback=_check_job_id)
@click.option("--reason", default="cancelled by operator", show_default=True,
              callback=_text_option("reason", max_chars=MAX_MESSAGE_CHARS),
              help=f"Recorded on the job (at most {MAX_MESSAGE_CHARS:,} characters).")
@database_option
@database_url_option
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: int, reason: str, database: str | None,
                database_url: str | None) -> None:
    """Cancel a waiting or running job.

    A running handler is not interrupted, but its outcome is ignored: the job stays cancelled.
    """
    with _queue_from(ctx, database_url) as queue:
        job = queue.cancel(job_id, reason=reason, database=database)
    click.echo(f"job {job.id} is {job.state.value}")


# ---------------------------------------------------------------- stats


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@database_url_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool, database_url: str | None) -> None:
    """Count jobs by state, by kind and by shard ('scheduled' = waiting for a future run_at), summed over
    every database of the shard map."""
    with _queue_from(ctx, database_url) as queue:
        counts = queue.stats()
    if as_json:
        _echo_json(counts.to_json())
        return
    click.echo(_stats_text(counts))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmarks (`python -m bench`) from a finejobs checkout; arguments pass through (try --help)."""
    if not (Path.cwd() / "bench" / "__main__.py").is_file():
        raise ConfigurationError("`finejobs bench` runs the benchmarks of a finejobs checkout: run it from the "
                                 "repository root (where bench/ is)")
    os.execv(sys.executable, [sys.executable, "-m", "bench", *args])


def _stats_text(counts: Stats) -> str:
    states = [s.value for s in JobState]
    parts = [f"total: {counts.total}", "",
             _table(["STATE", "JOBS"], [[s, str(counts.by_state.get(s, 0))] for s in states])]
    for title, groups in (("KIND", counts.by_kind), ("SHARD", counts.by_shard)):
        if not groups:
            continue
        used = [s for s in states if any(g.get(s) for g in groups.values())]
        rows = [[name, *(str(g.get(s, 0)) for s in used), str(sum(g.values()))]
                for name, g in sorted(groups.items())]
        parts += ["", _table([title, *(s.upper() for s in used), "TOTAL"], rows)]
    return "\n".join(parts)


from finejobs import cli_schedules as _cli_schedules  # noqa: E402, F401  (registers `finejobs schedules`)
from finejobs import cli_shards as _cli_shards  # noqa: E402, F401  (registers `finejobs shards`)

# ---------------------------------------------------------------- entry point


def _fail(message: str, code: int) -> int:
    """One line on stderr: passwords masked, control characters escaped, capped (limits.log_safe)."""
    click.echo(f"finejobs: error: {log_safe(_one_line(_scrub(message)))}", err=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point: run the CLI and return the exit status; every error is one line on stderr."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="finejobs",
                          standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return _fail(exc.format_message() + hint, 2)
    except click.ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code or 1)
    except click.Abort:
        return _fail("aborted", 1)
    except FinejobsError as exc:
        return _fail(str(exc) or type(exc).__name__, 1)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)", 1)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
