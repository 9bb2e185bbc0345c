"""``finejobs migrate``, ``finejobs worker`` and ``finejobs bench``: set up the tables, run workers."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from finejobs import ConfigurationError, JobState, __version__
from finejobs.cli._common import (
    APP_ENV,
    MAP_ENV,
    URL_ENV,
    Root,
    ScrubbingFormatter,
    Seconds,
    check_schemas,
    check_shard_pattern,
    configure,
    database_url_option,
    load_app,
    queue_from,
    scrub,
    text_option,
)
from finejobs.cli.schedules import parse_duration
from finejobs.limits import (
    DEFAULT_SCHEDULE_BATCH,
    MAX_CONCURRENCY,
    MAX_DURATION,
    MAX_POOL_SIZE,
    MAX_SCHEDULE_BATCH,
    MAX_WORKER_GRACE,
    MAX_WORKER_LEASE,
    MAX_WORKER_POLL,
)
from finejobs.store import available_migrations

if TYPE_CHECKING:
    from finejobs.metrics import MetricsServer
    from finejobs.runtime import Worker, WorkerGroup

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
METRICS_HOST = "127.0.0.1"  # --metrics-host: loopback unless asked
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_PROCESSES = 64  # --processes

# Bounds of the worker's options (documented in their --help): the Worker's own, from finejobs.limits.
MAX_POLL_INTERVAL = MAX_WORKER_POLL.total_seconds()
MAX_SHUTDOWN_GRACE = MAX_WORKER_GRACE.total_seconds()
MAX_LEASE = MAX_WORKER_LEASE.total_seconds()

log = logging.getLogger("finejobs.cli")

_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
RETAINED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED)  # the final states

if TYPE_CHECKING:
    _RetentionParam = click.ParamType[dict[JobState, timedelta], Any]
else:
    _RetentionParam = click.ParamType


class Retention(_RetentionParam):
    """``succeeded=7d,failed=30d``: how long finished jobs of each named final state are kept."""

    name = "RETENTION"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dict[JobState, timedelta]:
        if isinstance(value, dict):
            return value
        states = ", ".join(s.value for s in RETAINED_STATES)
        found: dict[JobState, timedelta] = {}
        for entry in str(value).split(","):
            state_name, equals, duration = (part.strip() for part in entry.partition("="))
            if not entry.strip():
                self.fail(f"{value!r}: an empty entry (write STATE=DURATION,STATE=DURATION)", param, ctx)
            if not equals or not state_name or not duration:
                self.fail(f"{entry.strip()!r} is not STATE=DURATION (e.g. succeeded=7d)", param, ctx)
            try:
                state = JobState(state_name.lower())
            except ValueError:
                state = None
            if state not in RETAINED_STATES:
                self.fail(f"{entry.strip()!r}: {state_name!r} is not a final state (one of {states})", param, ctx)
            assert state is not None
            if state in found:
                self.fail(f"{entry.strip()!r}: {state.value} is named twice", param, ctx)
            try:
                parts = parse_duration(duration)
                keep = timedelta(seconds=sum(v * _UNIT_SECONDS[u] for u, v in parts.items()))
            except (click.BadParameter, OverflowError) as exc:
                why = exc.message if isinstance(exc, click.BadParameter) else "over the limit"
                self.fail(f"{entry.strip()!r}: {why}", param, ctx)
            if keep <= timedelta(0) or keep > MAX_DURATION:
                self.fail(f"{entry.strip()!r}: the duration must be over 0 and at most 100 years", param, ctx)
            found[state] = keep
        return found


@click.command()
@database_url_option
@click.pass_context
def migrate(ctx: click.Context, database_url: str | None) -> None:
    """Create or upgrade the finejobs tables (in every database of the shard map).

    Applies the migrations this finejobs ships that the database lacks, in order, and prints each one
    it applied, or "up to date". Safe to run from several processes at once (an advisory lock
    serialises them).
    """
    names = {m.version: m.name for m in available_migrations()}
    with queue_from(ctx, database_url, check=False) as queue:
        several = len(queue.databases) > 1
        for database in queue.databases:
            applied = queue.store_of(database).migrate()
            where = f"{database}: " if several else ""
            if not applied:
                click.echo(f"{where}up to date (schema version {max(names)})")
            for version in applied:
                click.echo(f"{where}applied {version:04d}_{names.get(version, '?')}")


@click.command()
@click.option("--app", envvar=APP_ENV, show_envvar=True, required=True, metavar="MODULE:ATTR",
              help="The finejobs.Queue holding your job kinds, e.g. myapp.jobs:queue (a bare module "
                   "means its attribute 'queue'). Imported with the current directory on sys.path.")
@click.option("--shard", "shards", multiple=True, metavar="PATTERN", callback=check_shard_pattern,
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
@click.option("--heartbeat-interval", type=Seconds(0, MAX_POLL_INTERVAL, low_open=True), default=None,
              help="How often the leases of running jobs are extended [default: a third of --lease].")
@click.option("--claim-batch", type=click.IntRange(1, MAX_CONCURRENCY), default=100, show_default=True,
              help="The most jobs one claim round takes (never more than the free slots).")
@click.option("--claim-cooldown", type=Seconds(0, MAX_POLL_INTERVAL), default=0.005, show_default=True,
              help="After a full claim, how long to wait for half the slots to free, so the next claim is a batch.")
@click.option("--flush-interval", type=Seconds(0, MAX_POLL_INTERVAL), default=0.005, show_default=True,
              help="How often buffered job outcomes are written (one statement per batch).")
@click.option("--maintenance-interval", type=Seconds(0, MAX_POLL_INTERVAL), default=2.0, show_default=True,
              help="Seconds between maintenance passes (rescue lost leases, expire overdue jobs, prune by "
                   "--retention).")
@click.option("--retention", type=Retention(), default=None, metavar="STATE=DURATION,...",
              help="How long finished jobs are kept before maintenance deletes them, per final state, e.g. "
                   "'succeeded=7d,failed=30d' (units s, m, h, d, w; states succeeded, failed, expired, cancelled). "
                   "States not named keep their default (succeeded 1d, the others 7d).")
@click.option("--schedule-interval", type=Seconds(0, MAX_POLL_INTERVAL), default=1.0, show_default=True,
              help="Seconds between the scheduler's passes over the due schedules.")
@click.option("--schedule-batch", type=click.IntRange(1, MAX_SCHEDULE_BATCH), default=DEFAULT_SCHEDULE_BATCH,
              show_default=True, help="Due schedules the scheduler turns into jobs per statement (their rows stay "
                                      "locked until the batch commits; other workers take the next batches).")
@click.option("--shard-refresh-interval", type=Seconds(0, MAX_POLL_INTERVAL), default=5.0, show_default=True,
              help="How often shard globs (--shard 'district-*') are matched again against the shards that exist.")
@click.option("--scheduler/--no-scheduler", "run_scheduler", default=True, show_default=True,
              help="Fire the schedules stored in the database (any number of workers may; each tick makes one "
                   "job). --no-scheduler: this worker only runs jobs (schedules declared in code are not upserted "
                   "by it either).")
@click.option("--local-schedules/--no-local-schedules", "local_schedules", default=True, show_default=True,
              help="Run the app's local schedules (queue.local_schedule: in every worker process).")
@click.option("--listen/--no-listen", "listen", default=True, show_default=True,
              help="LISTEN for enqueue notifications (a wake-up hint); --no-listen: poll only (e.g. behind a "
                   "pooler that drops LISTEN).")
@click.option("--register/--no-register", "register", default=True, show_default=True,
              help="Keep a row in the worker registry (finejobs workers, the console); --no-register: unlisted.")
@click.option("--worker-id", default=None, metavar="ID", callback=text_option("worker id", max_chars=200),
              help="This worker's id in leases and the registry [default: HOST:PID:random].")
@click.option("--pool-size", type=click.IntRange(2, MAX_POOL_SIZE), default=5, show_default=True,
              help="Database connections this worker may hold (plus one for LISTEN).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True, help="Log level; logs go to stdout, one line per job outcome.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics (needs the extra "
                   "finejobs[metrics]; docs/metrics.md lists them). Default: no metrics server.")
@click.option("--metrics-host", default=METRICS_HOST, show_default=True, metavar="HOST",
              help="The address --metrics-port listens on (0.0.0.0 or :: for every interface).")
@click.option("--processes", type=click.IntRange(1, MAX_PROCESSES), default=1, show_default=True,
              help="Run this many worker processes under a supervisor (each with these options and its own "
                   "worker id; logs tagged [worker I/N]; a crashed one is restarted with backoff; SIGTERM stops "
                   "them all gracefully). With --metrics-port P, process I serves P+I-1. 1: no supervisor.")
@database_url_option
@click.pass_context
def worker(ctx: click.Context, app: str, shards: tuple[str, ...], concurrency: int, poll_interval: float,
           shutdown_grace: float, lease: float, heartbeat_interval: float | None, claim_batch: int,
           claim_cooldown: float, flush_interval: float, maintenance_interval: float,
           retention: dict[JobState, timedelta] | None, schedule_interval: float, schedule_batch: int,
           shard_refresh_interval: float,
           run_scheduler: bool, local_schedules: bool, listen: bool, register: bool, worker_id: str | None,
           pool_size: int, log_level: str, metrics_port: int | None, metrics_host: str, processes: int,
           database_url: str | None) -> None:
    """Run a worker: claim due jobs of the app's kinds and run them until stopped.

    SIGTERM or SIGINT stops it gracefully: no new jobs are claimed, running jobs get --shutdown-grace
    seconds to finish, and jobs still running after that are given back to the queue (a second
    signal exits at once; their leases bring them back). Exits 0 after a clean stop, 1 if a worker
    service crashed. Paused kinds and shards (`finejobs pause`) are not claimed while paused.

    The database URL, when given (--database-url or FINEJOBS_DATABASE_URL), replaces the one the
    app's Queue was created with; so does a shard map (--shard-map or FINEJOBS_SHARD_MAP). With a
    shard map, the worker connects only to the databases that hold its shards (one set of
    --concurrency slots per database).

    \b
    Examples:
      finejobs worker --app myapp.jobs:queue --shard district-3 --concurrency 20
      finejobs worker --app myapp.jobs:queue --shard 'district-*'
      finejobs worker --app myapp.jobs:queue --metrics-port 9400
      finejobs worker --app myapp.jobs:queue --retention succeeded=7d,failed=30d --no-scheduler
      finejobs worker --app myapp.jobs:queue --processes 2
    """
    if metrics_port is None and ctx.get_parameter_source("metrics_host") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--metrics-host needs --metrics-port")
    if metrics_port is not None and metrics_port + processes - 1 > 65535:
        raise click.UsageError(f"--metrics-port {metrics_port} with --processes {processes}: the processes serve "
                               f"ports {metrics_port} to {metrics_port + processes - 1}, over 65535")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ScrubbingFormatter(LOG_FORMAT))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])  # as before: a no-op if logging is set up
    queue = load_app(app)
    configure(ctx, queue, database_url, pool_size=pool_size)  # remembers the passwords of every database
    try:
        log.info("finejobs %s: app=%s database=%s", __version__, app,
                 ", ".join(f"{n}={scrub(queue.shard_map.url(n))}" for n in queue.databases)
                 if len(queue.databases) > 1 else scrub(queue.url))
        queue.store  # noqa: B018  (an unparsable URL fails here, as one line)
        # Every database the worker will serve answers and is migrated, or one line says which does not
        # (with a shard map, a worker per database would otherwise log its failure with a traceback).
        check_schemas(queue, queue.shard_map.databases_for(list(shards) or None))
        from finejobs.runtime.worker import DEFAULT_RETENTION

        if heartbeat_interval is not None and heartbeat_interval >= lease:
            raise click.UsageError(f"--heartbeat-interval ({heartbeat_interval:g}) must be shorter than --lease "
                                   f"({lease:g}), or leases run out between heartbeats")
        if processes > 1:  # checked once here; the children are this command again, one process each
            queue.close()
            ctx.exit(_supervise(ctx, processes, shutdown_grace))
        if os.environ.get("FINEJOBS_SUPERVISED"):  # a child of --processes: stop if the supervisor dies
            from finejobs.runtime.supervisor import watch_supervisor

            watch_supervisor()
        runner = queue.worker(
            shards=list(shards) or None, concurrency=concurrency, poll_interval=poll_interval,
            shutdown_grace=shutdown_grace, lease=timedelta(seconds=lease), heartbeat_interval=heartbeat_interval,
            claim_batch=claim_batch, claim_cooldown=claim_cooldown, flush_interval=flush_interval,
            maintenance_interval=maintenance_interval, retention={**DEFAULT_RETENTION, **(retention or {})},
            schedule_interval=schedule_interval, schedule_batch=schedule_batch,
            shard_refresh_interval=shard_refresh_interval,
            run_scheduler=run_scheduler, local_schedules=local_schedules, listen=listen, register=register,
            worker_id=worker_id)
        server = None if metrics_port is None else _serve_metrics(runner, metrics_host, metrics_port)
        try:
            runner.run()
        finally:
            if server is not None:
                server.close()
    finally:
        queue.close()
    _exit_if_handlers_linger()


def child_args(ctx: click.Context, index: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of child ``index`` (1-based) of ``finejobs worker --processes``.

    Options given on the command line are written out again from their parsed values (those from the
    environment reach the children through it); the database URL and shard map go through the
    environment (a URL's password stays off the command lines), --worker-id ID becomes ID:INDEX and
    --metrics-port P becomes P+INDEX-1."""
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if name in (None, "processes", "database_url") or not isinstance(param, click.Option):
            continue
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[name]
        flag = param.opts[0]
        if name == "worker_id":
            value = f"{value}:{index}"
        elif name == "metrics_port":
            value = int(value) + index - 1
        if param.is_flag and param.secondary_opts:
            args.append(flag if value else param.secondary_opts[0])
        elif param.is_flag:
            args += [flag] if value else []
        elif param.multiple:
            for item in value:
                args += [flag, str(item)]
        elif isinstance(value, dict):  # --retention
            args += [flag, ",".join(f"{state.value}={keep.total_seconds():f}" for state, keep in value.items())]
        else:
            args += [flag, str(value)]
    env: dict[str, str] = {}
    root = ctx.find_object(Root)
    explicit = ctx.params.get("database_url") or (root.database_url if root else None)
    if explicit:
        env.update({URL_ENV: explicit, MAP_ENV: ""})  # as here: a URL on the command line wins over a map
    elif root is not None and root.shard_map:
        env[MAP_ENV] = os.path.abspath(root.shard_map)
    return [sys.executable, "-m", "finejobs", "worker", *args], env


def _supervise(ctx: click.Context, processes: int, shutdown_grace: float) -> int:
    from finejobs.runtime.supervisor import ChildSpec, Supervisor

    children = []
    for i in range(1, processes + 1):
        argv, env = child_args(ctx, i)
        children.append(ChildSpec(argv, env, tag=f"worker {i}/{processes}"))
    return Supervisor(children, stop_timeout=shutdown_grace + 30.0).run()


def _serve_metrics(runner: Worker | WorkerGroup, host: str, port: int) -> MetricsServer:
    """Observe the worker(s) with finejobs.metrics.WorkerMetrics and serve them over HTTP."""
    try:
        from finejobs import metrics
    except ImportError as exc:
        if not (exc.name or "").startswith("prometheus_client"):
            raise
        raise ConfigurationError("--metrics-port needs prometheus-client: pip install 'finejobs[metrics]'") from exc
    observed = metrics.WorkerMetrics()
    observed.attach(runner)
    server = metrics.serve(observed.registry, port=port, host=host)
    log.info("metrics at %s", server.url)
    return server


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


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmarks (`python -m bench`) from a finejobs checkout; arguments pass through (try --help)."""
    if not (Path.cwd() / "bench" / "__main__.py").is_file():
        raise ConfigurationError("`finejobs bench` runs the benchmarks of a finejobs checkout: run it from the "
                                 "repository root (where bench/ is)")
    os.execv(sys.executable, [sys.executable, "-m", "bench", *args])
