"""``finejobs schedules ...``: list, show, add, update, delete, pause, resume, pause-all, resume-all, run-now,
skip-next and sync recurring schedules: a thin view over ``finejobs.admin.Admin.schedules``.

```
finejobs schedules add policy-renewals --kind renew.policies --cron "0 6 * * MON" --tz Africa/Dar_es_Salaam
finejobs schedules list --search renew --sort next
finejobs schedules show policy-renewals
```
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from finejobs import Adaptive, Cron, DailyAt, Every, InvalidJobOptions, Once, RRule, Rule, Schedule
from finejobs.admin import Admin
from finejobs.cli._common import (
    AwareDateTime,
    F,
    admin_from,
    check_shard,
    database_url_option,
    echo_json,
    table,
    ts,
)
from finejobs.limits import MAX_ATTEMPTS, MAX_MISFIRE_LIMIT, check_duration, check_text, check_time
from finejobs.schedule_ops import RUNS_LEFT_CAP, SORT_KEYS
from finejobs.scheduler import MISFIRES, OVERLAPS

# The choices of --misfire and --overlap (the scheduler checks them again).

_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days",
          "w": "weeks", "mo": "months", "y": "years"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(mo|min|sec|[smhdwy])")


def parse_duration(text: str, *, calendar: bool = False) -> dict[str, float]:
    """``90s``, ``5m``, ``1h30m``, ``2w``, ``1mo``, ``1y`` or plain seconds, as Every() keyword arguments."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return {"seconds": float(value)}
    parts: dict[str, float] = {}
    position = 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        unit = _UNITS[match.group(2)]
        parts[unit] = parts.get(unit, 0) + float(match.group(1))
        position = match.end()
    if not parts or position != len(value):
        examples = "90s, 5m, 1h30m, 2w" + (", 1mo, 1y" if calendar else "")
        raise click.BadParameter(f"{text!r} is not a duration (e.g. {examples})")
    if not calendar and ("months" in parts or "years" in parts):
        raise click.BadParameter(f"{text!r}: months and years are not allowed here")
    if not all(math.isfinite(v) for v in parts.values()):
        raise click.BadParameter(f"{text!r} is over the limit of 100 years")
    return parts


_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


def _seconds(parts: dict[str, float]) -> float:
    return sum(value * _SECONDS[unit] for unit, value in parts.items())


def _timedelta(text: str) -> timedelta:
    parts = parse_duration(text)
    try:
        return timedelta(seconds=_seconds(parts))
    except OverflowError:
        raise click.BadParameter(f"{text!r} is over the limit of 100 years") from None


def _check_name(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    try:
        check_text("name", value, max_chars=200)
        if not value.strip():
            raise InvalidJobOptions("name must not be blank")
    except InvalidJobOptions as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _check_time(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if isinstance(value, datetime):
        try:
            check_time((param.name or "time").replace("_", "-"), value)
        except InvalidJobOptions as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _rule_from_options(o: dict[str, Any]) -> Rule | None:
    given = [k for k in ("cron", "rrule", "every", "daily_at", "once", "adaptive") if o.get(k)]
    if not given:
        if any(o.get(k) is not None for k in ("tz", "start", "until", "count")):
            raise click.UsageError("--tz, --start, --until and --count go with a rule option (--cron, --every...)")
        return None
    if len(given) > 1:
        raise click.UsageError("give one rule: --cron, --rrule, --every, --daily-at, --once or --adaptive")
    tz, start, until, count = o.get("tz"), o.get("start"), o.get("until"), o.get("count")
    which = given[0]
    if count is not None and which not in ("every", "rrule"):
        raise click.UsageError("--count goes with --every or --rrule")
    try:
        if which == "cron":
            return Cron(o["cron"], tz=tz or "UTC", start=start, until=until)
        if which == "rrule":
            text = o["rrule"]
            if count is not None:
                text += f";COUNT={count}"
            if until is not None:
                text += ";UNTIL=" + until.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            return RRule(text, tz=tz, start=start)
        if which == "every":
            units = parse_duration(o["every"], calendar=True)
            months = units.pop("months", 0) + 12 * units.pop("years", 0)
            if months != int(months):
                raise click.BadParameter("months and years must be whole numbers", param_hint="'--every'")
            return Every(seconds=_seconds(units), months=int(months), start=start, count=count, until=until, tz=tz)
        if which == "daily_at":
            return DailyAt(*o["daily_at"], tz=tz or "UTC", start=start, until=until)
        if which == "once":
            return Once(o["once"])
        delays: dict[str, timedelta] = {}
        for item in o["adaptive"].split(","):
            key, _, value = item.partition("=")
            key = key.strip().lower()
            if key not in ("success", "idle", "error", "timeout") or not value:
                raise click.BadParameter(f"--adaptive takes success=5m,idle=30m,error=1m,timeout=10m, not {item!r}")
            try:
                delays[f"on_{key}"] = _timedelta(value)
            except click.BadParameter as exc:
                raise click.BadParameter(exc.message, param_hint="'--adaptive'") from None
        if "on_success" not in delays:
            raise click.BadParameter("--adaptive needs at least success=DURATION")
        return Adaptive(**delays)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'--{which.replace('_', '-')}'") from None
    except click.BadParameter as exc:
        if exc.param is not None or exc.param_hint is not None:
            raise
        raise click.BadParameter(exc.message, param_hint=f"'--{which.replace('_', '-')}'") from None


def _rule_options(function: F) -> F:
    options = [
        click.option("--cron", metavar="EXPR", help="A cron expression: 5 fields, or 6 with seconds first; L, W, #."),
        click.option("--rrule", metavar="RRULE", help="An RFC 5545 RRULE, e.g. 'FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6'."),
        click.option("--every", metavar="DURATION", help="An interval: 90s, 5m, 2h, 1d, 2w, 1mo, 1y."),
        click.option("--daily-at", multiple=True, metavar="HH:MM", help="A time of day; repeat for several."),
        click.option("--once", type=AwareDateTime(), callback=_check_time,
                     help="One run at this moment (ISO 8601 with a timezone)."),
        click.option("--adaptive", metavar="DELAYS",
                     help="Delays after each outcome: success=5m,idle=30m,error=1m,timeout=10m."),
        click.option("--tz", metavar="ZONE", default=None, help="IANA timezone of the rule [default: UTC]."),
        click.option("--start", type=AwareDateTime(), default=None, callback=_check_time,
                     help="The rule's start: anchors --every and INTERVAL, and no fire comes before it."),
        click.option("--until", type=AwareDateTime(), default=None, callback=_check_time,
                     help="No fire after this moment (inclusive)."),
        click.option("--count", type=click.IntRange(min=1), default=None,
                     help="With --every or --rrule: this many runs."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _schedule_options(required_kind: bool) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        options = [
            click.option("--kind", required=required_kind, metavar="KIND", help="The job kind each tick enqueues."),
            click.option("--payload", default=None, metavar="JSON", help="The payload of every run, a JSON object."),
            click.option("--description", default=None, help="Free text, searched by 'list --search'."),
            click.option("--shard", default=None, callback=check_shard, help="Shard of the jobs [default: default]."),
            click.option("--priority", type=click.IntRange(-32768, 32767), default=None, help="Priority of the jobs."),
            click.option("--max-attempts", type=click.IntRange(1, MAX_ATTEMPTS), default=None,
                         help="Attempts per run [default: the kind's with --app, else 3]."),
            click.option("--misfire", type=click.Choice(MISFIRES), default=None,
                         help="After downtime: coalesce (one run), all (each missed tick), skip [default: coalesce]."),
            click.option("--misfire-limit", type=click.IntRange(1, MAX_MISFIRE_LIMIT), default=None,
                         help="With --misfire all: at most this many catch-up runs [default: 100]."),
            click.option("--misfire-grace", default=None, metavar="DURATION",
                         help="With --misfire skip: a tick this late still runs [default: 60s]."),
            click.option("--overlap", type=click.Choice(OVERLAPS), default=None,
                         help="While a run is unfinished: skip the tick, allow it, or wait [default: skip]."),
            click.option("--expires-in", default=None, metavar="DURATION",
                         help="A run must start within this long [default: until the next tick]."),
            click.option("--app", default=None, metavar="MODULE:ATTR",
                         help="Validate the payload through this app's job kind (and take its defaults)."),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _options(o: dict[str, Any]) -> dict[str, Any]:
    """The schedule options given on the command line, ready for admin.schedules.add/update."""
    options: dict[str, Any] = {}
    for key in ("description", "shard", "priority", "max_attempts", "misfire", "misfire_limit", "overlap"):
        if o.get(key) is not None:
            options[key] = o[key]
    if o.get("payload") is not None:
        try:
            options["payload"] = json.loads(o["payload"])
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="'--payload'") from None
        except RecursionError:
            raise click.BadParameter("the JSON is nested too deep", param_hint="'--payload'") from None
    for key in ("misfire_grace", "expires_in"):
        if o.get(key) is not None:
            hint = f"'--{key.replace('_', '-')}'"
            try:
                options[key] = check_duration(key, _timedelta(o[key]), strict=key == "expires_in")
            except click.BadParameter as exc:
                raise click.BadParameter(exc.message, param_hint=hint) from None
            except InvalidJobOptions as exc:
                raise click.BadParameter(str(exc), param_hint=hint) from None
    return options


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    return f"{seconds:.3f}s" if seconds < 60 else f"{seconds / 60:.1f}m"


def _left(schedule: Schedule) -> str:
    if schedule.runs_left is None:
        return "-"
    return f"{schedule.runs_left}+" if schedule.runs_left >= RUNS_LEFT_CAP else str(schedule.runs_left)


@click.group()
def schedules() -> None:
    """Recurring schedules: each tick enqueues one job (see docs/schedules.md)."""


@schedules.command("list")
@click.option("--search", default=None, metavar="TEXT", help="Only schedules whose name, description or kind has TEXT.")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="name", show_default=True, help="Sort by this column.")
@click.option("--desc", is_flag=True, help="Sort in descending order.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@database_url_option
@click.pass_context
def schedules_list(ctx: click.Context, search: str | None, sort: str, desc: bool, as_json: bool,
                   database_url: str | None) -> None:
    """List schedules: rule in words, next fire (UTC), last run and its outcome, status, runs, runs left."""
    with admin_from(ctx, database_url) as admin:
        found = admin.schedules.list(search=search, sort=sort, descending=desc)
    if as_json:
        echo_json([s.to_json() for s in found])
        return
    if not found:
        click.echo("no schedules")
        return
    rows = [[s.name, s.kind, s.rule_text, ts(s.next_fire_at), ts(s.last_fire_at),
             s.last_outcome or s.last_state or "-", s.status, str(s.runs), _left(s)] for s in found]
    click.echo(table(["NAME", "KIND", "RULE", "NEXT", "LAST", "OUTCOME", "STATUS", "RUNS", "LEFT"], rows))


@schedules.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule, its next fires and runs as JSON.")
@database_url_option
@click.pass_context
def schedules_show(ctx: click.Context, name: str, as_json: bool, database_url: str | None) -> None:
    """Show a schedule, its next 10 fire times and its recent runs (status, duration, error)."""
    with admin_from(ctx, database_url) as admin:
        schedule = admin.schedules.get(name)
        runs = admin.schedules.runs(name, limit=10)
    upcoming = schedule.next_fires(10)
    if as_json:
        echo_json({**schedule.to_json(), "next_fires": [f.isoformat() for f in upcoming],
                    "recent_runs": [r.to_json() for r in runs]})
        return
    fields = [("name", schedule.name), ("description", schedule.description or "-"), ("kind", schedule.kind),
              ("rule", schedule.rule_text), ("status", schedule.status), ("runs", str(schedule.runs)),
              ("runs left", _left(schedule)), ("skipped", str(schedule.skipped)), ("shard", schedule.shard),
              ("priority", str(schedule.priority)), ("misfire", schedule.misfire), ("overlap", schedule.overlap),
              ("expires in", _duration(schedule.expires_in) if schedule.expires_in else "until the next tick"),
              ("source", schedule.source), ("error", schedule.error or "-")]
    width = max(len(k) for k, _ in fields) + 1
    lines = [f"{k + ':':<{width}} {v}" for k, v in fields]
    lines.append("payload: " + json.dumps(schedule.payload))
    lines.append("next fires:" if upcoming else "next fires: none")
    lines += [f"  {f.astimezone(UTC).isoformat()}" for f in upcoming]
    lines.append("recent runs:" if runs else "recent runs: none")
    lines += [f"  job {r.job_id}  {ts(r.fire_at)}  {r.state}  {r.outcome or '-'}  {_duration(r.duration)}"
              f"{'  ' + r.error if r.error else ''}" for r in runs]
    click.echo("\n".join(lines))


@schedules.command("add")
@click.argument("name", callback=_check_name)
@_rule_options
@_schedule_options(required_kind=True)
@click.option("--paused", is_flag=True, help="Add it paused.")
@database_url_option
@click.pass_context
def schedules_add(ctx: click.Context, /, name: str, paused: bool, database_url: str | None, app: str | None,
                  kind: str, **o: Any) -> None:
    """Add a schedule NAME: every tick of its rule enqueues one job of --kind.

    \b
    Examples:
      finejobs schedules add renewals --kind renew.policies --cron "0 6 * * MON" --tz Africa/Dar_es_Salaam
      finejobs schedules add ping --kind health.ping --every 5s --count 10 --start 2026-11-23T09:00:00Z
      finejobs schedules add last-monday --kind report --rrule "FREQ=MONTHLY;BYDAY=-1MO;BYHOUR=6"
      finejobs schedules add nightly --kind vacuum --daily-at 00:00 --tz Europe/Madrid
      finejobs schedules add sync --kind sync.lab --adaptive success=5m,idle=30m,error=1m,timeout=10m
    """
    rule = _rule_from_options(o)
    if rule is None:
        raise click.UsageError("give a rule: --cron, --rrule, --every, --daily-at, --once or --adaptive")
    with admin_from(ctx, database_url, app=app) as admin:
        schedule = admin.schedules.add(name, kind, rule, paused=paused, **_options(o))
    click.echo(f"schedule {schedule.name}: {schedule.rule_text}; next fire {ts(schedule.next_fire_at)}")


@schedules.command("update")
@click.argument("name")
@_rule_options
@_schedule_options(required_kind=False)
@database_url_option
@click.pass_context
def schedules_update(ctx: click.Context, /, name: str, database_url: str | None, app: str | None, kind: str | None,
                     **o: Any) -> None:
    """Change a schedule's rule or options (only those given); a new rule recomputes the next fire."""
    changes = _options(o)
    rule = _rule_from_options(o)
    if rule is not None:
        changes["rule"] = rule
    if kind is not None:
        changes["kind"] = kind
    if not changes:
        raise click.UsageError("nothing to update: give a rule or an option")
    with admin_from(ctx, database_url, app=app) as admin:
        schedule = admin.schedules.update(name, **changes)
    click.echo(f"schedule {schedule.name}: {schedule.rule_text}; next fire {ts(schedule.next_fire_at)}")


def _simple(command: str, help_text: str, action: Callable[[Admin, str], str]) -> None:
    @schedules.command(command, help=help_text)
    @click.argument("name")
    @database_url_option
    @click.pass_context
    def run(ctx: click.Context, name: str, database_url: str | None) -> None:
        with admin_from(ctx, database_url) as admin:
            click.echo(action(admin, name))


def _delete(admin: Admin, name: str) -> str:
    admin.schedules.delete(name)
    return f"schedule {name} deleted"


_simple("delete", "Delete schedule NAME (the jobs it already made stay).", _delete)
_simple("pause", "Pause schedule NAME: no tick runs until it is resumed.",
        lambda a, n: f"schedule {n} is {a.schedules.pause(n).status}")
_simple("resume", "Resume schedule NAME (ticks missed while paused do not run).",
        lambda a, n: f"schedule {n} is {(s := a.schedules.resume(n)).status}; next fire {ts(s.next_fire_at)}")
_simple("skip-next", "Skip the next tick of schedule NAME.",
        lambda a, n: f"schedule {n}: next fire {ts(a.schedules.skip_next(n).next_fire_at)}")


@schedules.command("run-now")
@click.argument("name")
@click.option("--force", is_flag=True, help="Run even while a previous run is unfinished.")
@database_url_option
@click.pass_context
def schedules_run_now(ctx: click.Context, name: str, force: bool, database_url: str | None) -> None:
    """Enqueue one run of schedule NAME now (the ticks go on as before); prints the job id."""
    with admin_from(ctx, database_url) as admin:
        click.echo(admin.schedules.run_now(name, force=force))


def _all(command: str, paused: bool) -> None:
    verb = "paused" if paused else "resumed"

    @schedules.command(command, help=f"{'Pause' if paused else 'Resume'} every schedule (or every one of --kind).")
    @click.option("--kind", default=None, help="Only the schedules of this job kind.")
    @database_url_option
    @click.pass_context
    def run(ctx: click.Context, kind: str | None, database_url: str | None) -> None:
        with admin_from(ctx, database_url) as admin:
            names = (admin.schedules.pause_all if paused else admin.schedules.resume_all)(kind=kind)
        click.echo(f"{verb} {len(names)} schedule(s)" + (f": {', '.join(names)}" if names else ""))


_all("pause-all", True)
_all("resume-all", False)


@schedules.command("sync")
@click.option("--app", required=True, metavar="MODULE:ATTR", help="The app whose declared schedules to write.")
@database_url_option
@click.pass_context
def schedules_sync(ctx: click.Context, app: str, database_url: str | None) -> None:
    """Write the schedules the app declares in code now (every worker does this when it starts)."""
    with admin_from(ctx, database_url, app=app) as admin:
        names = admin.schedules.sync()
    click.echo(f"wrote {len(names)} schedule(s)" + (f": {', '.join(names)}" if names else ""))

