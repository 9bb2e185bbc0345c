"""``finejobs services check|run|list``: HTTP services from a JSON or TOML file (docs/services.md).

```
finejobs services check services.json           # validate; print each plan and its next run
finejobs services run services.json --concurrency 4   # a daemon: upsert the services' schedules, work them
finejobs services list                          # last outcome, message and next run of each service
```
``list`` reads the schedules through the operations API (finejobs.admin.Admin); ``run`` is a worker serving
only the built-in kind ``finejobs.http_service`` (several daemons may run: each call is made once).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from finejobs import Queue, __version__
from finejobs.cli._common import (
    ScrubbingFormatter,
    Seconds,
    admin_from,
    check_schemas,
    configure,
    database_url_option,
    echo_json,
    scrub,
    table,
    ts,
)
from finejobs.cli.worker import LOG_FORMAT, LOG_LEVELS, MAX_LEASE, MAX_POLL_INTERVAL, MAX_SHUTDOWN_GRACE
from finejobs.cli.worker import _exit_if_handlers_linger as exit_if_handlers_linger
from finejobs.http_runner import KIND, mask_endpoint
from finejobs.limits import MAX_CONCURRENCY, log_safe
from finejobs.schedules import Adaptive
from finejobs.services import PREFIX, ServiceDefinition, declare_services, describe, load_services

log = logging.getLogger("finejobs.cli")
LEASE_MARGIN = 5.0  # seconds: the default --lease is the longest timeout plus this, at least 30


@click.group()
def services() -> None:
    """HTTP services: endpoints called by POST on a plan (daily at a time, or an interval chosen by the last
    outcome), defined in a JSON file (Linkcare's format) or a TOML file. See docs/services.md."""


def _next_run(definition: ServiceDefinition, now: datetime) -> str:
    rule = definition.rule()
    if isinstance(rule, Adaptive):
        return "when a daemon starts it, then after each run"
    upcoming = rule.next_after(now)
    if upcoming is None:
        return "-"
    zone = definition.execution_plan.timezone or "UTC"
    local = upcoming.astimezone(ZoneInfo(zone))
    return f"{ts(upcoming)} ({local:%Y-%m-%d %H:%M:%S} {zone})"


@services.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(file: str, as_json: bool) -> None:
    """Validate FILE (every field; nothing is written) and print each service's plan and next run.

    A bad file is refused as a whole: every bad field is named by its path ([2].execution_plan.time), a
    syntax error by its line."""
    definitions = load_services(file)
    now = datetime.now(UTC)
    if as_json:
        echo_json([{**describe(d), "next_run": _next_run(d, now)} for d in definitions])
        return
    rows = [[d.name, describe(d)["plan"], _next_run(d, now), "allowed" if d.allow_concurrency else "one at a time",
             f"{d.timeout:g}s", mask_endpoint(d.endpoint)] for d in definitions]
    click.echo(table(["NAME", "PLAN", "NEXT RUN", "CALLS", "TIMEOUT", "ENDPOINT"], rows))
    click.echo(f"{len(definitions)} service{'s' if len(definitions) != 1 else ''}: ok")


@services.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=10, show_default=True,
              help="How many calls this daemon makes at once.")
@click.option("--poll-interval", type=Seconds(0, MAX_POLL_INTERVAL, low_open=True), default=1.0, show_default=True,
              help="How often to look for due calls when no notification arrives.")
@click.option("--shutdown-grace", type=Seconds(0, MAX_SHUTDOWN_GRACE), default=30.0, show_default=True,
              help="On SIGTERM/SIGINT, how long running calls may finish before they are given back.")
@click.option("--lease", type=Seconds(0.5, MAX_LEASE), default=None,
              help="How long a call stays this daemon's without a heartbeat: after a crash, how long until "
                   "another daemon may call that service again [default: 30, or the longest service timeout "
                   f"plus {LEASE_MARGIN:g} if that is longer].")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True, help="Log level; logs go to stdout, one line per call.")
@database_url_option
@click.pass_context
def run(ctx: click.Context, file: str, concurrency: int, poll_interval: float, shutdown_grace: float,
        lease: float | None, log_level: str, database_url: str | None) -> None:
    """A daemon: upsert the schedules of FILE's services and make their calls until stopped.

    Several daemons may run with the same file: each run of a service is one job, made once; a service
    with allow_concurrency false is never called twice at once, whichever daemon calls it. SIGTERM or
    SIGINT stops it as it stops `finejobs worker`."""
    definitions = load_services(file)  # a bad file: refused before anything connects
    if lease is None:  # a crashed daemon's call keeps its lock at least as long as the call could have run
        lease = min(MAX_LEASE, max([30.0, *(d.timeout + LEASE_MARGIN for d in definitions)]))
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ScrubbingFormatter(LOG_FORMAT))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    queue = Queue()
    configure(ctx, queue, database_url)
    try:
        declare_services(queue, definitions)
        log.info("finejobs %s: services %s (%d) database=%s", __version__, log_safe(file), len(definitions),
                 scrub(queue.url))
        check_schemas(queue)
        runner = queue.worker(concurrency=concurrency, poll_interval=poll_interval, shutdown_grace=shutdown_grace,
                              lease=timedelta(seconds=lease))
        runner.run()
    finally:
        queue.close()
    exit_if_handlers_linger()


@services.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_url_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool, database_url: str | None) -> None:
    """Every service: its plan, last outcome, message and next run."""
    with admin_from(ctx, database_url) as admin:
        found: list[dict[str, Any]] = []
        for schedule in admin.schedules.list(search=PREFIX):
            if schedule.kind != KIND or not schedule.name.startswith(PREFIX):
                continue
            runs = admin.schedules.runs(schedule.name, limit=1)
            last = runs[0] if runs else None
            message = last.error if last is not None and last.error else ""
            if last is not None and not message and last.outcome in ("success", "idle"):
                value = admin.job(last.job_id).return_value
                message = str(value.get("message") or "") if isinstance(value, dict) else ""
            found.append({
                "name": schedule.name.removeprefix(PREFIX), "schedule": schedule.name, "plan": schedule.rule_text,
                "status": schedule.status, "last_outcome": last.outcome if last is not None else None,
                "last_state": last.state if last is not None else None,
                "last_run_at": last.finished_at.isoformat() if last is not None and last.finished_at else None,
                "message": scrub(message),
                "next_run": schedule.next_fire_at.isoformat() if schedule.next_fire_at else None,
                "endpoint": mask_endpoint(str(schedule.payload.get("endpoint", ""))),
            })
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no services")
        return
    rows = [[f["name"], f["plan"], f["last_outcome"] or (f["last_state"] or "-"), log_safe(f["message"] or "-", 80),
             ts(datetime.fromisoformat(f["next_run"])) if f["next_run"] else "after the running call"
             if f["last_state"] in ("available", "running") else "-"] for f in found]
    click.echo(table(["NAME", "PLAN", "LAST", "MESSAGE", "NEXT RUN"], rows))
