"""``finejobs groups list | show | seal | cancel``: thin views over ``finejobs.admin.Admin.groups``.

```
finejobs groups list --state sealed
finejobs groups show renewals-2026-12-07
finejobs groups cancel renewals-2026-12-07 --reason "wrong tariff" --yes
```
"""

from __future__ import annotations

from typing import Any

import click

from finejobs.admin import Admin, GroupDetail
from finejobs.admin.groups import GROUP_PAGE_LIMIT
from finejobs.cli._common import admin_from, database_url_option, echo_json, scrub, table, text_option, ts
from finejobs.errors import FinejobsError
from finejobs.groups import GROUP_STATES, GroupProgress
from finejobs.jobs import Job
from finejobs.limits import MAX_MESSAGE_CHARS

NAME_CHARS = 200  # a group's name at most (finejobs.groups)
BAR_WIDTH = 20


# ---------------------------------------------------------------- shared with finejobs.cli.pipelines


def bar(done: int, total: int, width: int = BAR_WIDTH, *, empty: float = 1.0) -> str:
    """A text progress bar, ``[########............]  40%`` (``empty``: the share shown while total is 0)."""
    share = empty if total <= 0 else min(1.0, max(0.0, done / total))
    filled = int(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share * 100:3.0f}%"


def span(seconds: float | None) -> str:
    """A duration for people: ``45s``, ``12m05s``, ``3h20m``, ``2d04h`` (``-`` when unknown)."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def rate(per_second: float | None) -> str:
    if per_second is None:
        return "-"
    return f"{per_second:.1f}/s" if per_second >= 1 else f"{per_second * 60:.1f}/min"


def fields_text(fields: list[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in fields) + 1
    return [f"{name + ':':<{width}} {value}" for name, value in fields]


# ---------------------------------------------------------------- the commands

_NAME = click.argument("name", callback=text_option("group name", max_chars=NAME_CHARS))
_DATABASE = click.option("--database", "database", metavar="NAME", default=None,
                         help="With a shard map: the database holding the group [default: the one that has it].")


@click.group()
def groups() -> None:
    """Groups of jobs (queue.group(name)): their progress, the members that did not succeed; seal or cancel
    one. A group finishes once it is sealed and every member is done; its callbacks then run once."""


@groups.command("list")
@click.option("--state", type=click.Choice(GROUP_STATES), default=None, help="Only groups in this state.")
@click.option("--limit", type=click.IntRange(1, GROUP_PAGE_LIMIT), default=50, show_default=True,
              help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of groups (every field).")
@database_url_option
@click.pass_context
def groups_list(ctx: click.Context, state: str | None, limit: int, as_json: bool, database_url: str | None) -> None:
    """List groups, newest first: state, progress, members done of total, succeeded, failed (or expired) and
    cancelled, the rate members finish at and the time left (ETA)."""
    with admin_from(ctx, database_url) as admin:
        found = admin.groups.list(state=state, limit=limit)
        many = len(admin.queue.databases) > 1
    if as_json:
        echo_json([g.to_json() for g in found])
        return
    if not found:
        click.echo("no groups")
        return
    rows = [[g.name, *([g.database] if many else []), g.state, bar(g.done, g.total), f"{g.done}/{g.total}",
             str(g.succeeded), str(g.failed + g.expired), str(g.cancelled), rate(g.per_second), span(g.eta_seconds),
             ts(g.created_at)] for g in found]
    headers = ["NAME", *(["DATABASE"] if many else []), "STATE", "PROGRESS", "DONE", "SUCCEEDED", "FAILED",
               "CANCELLED", "RATE", "ETA", "CREATED"]
    click.echo(table(headers, rows))


@groups.command("show")
@_NAME
@_DATABASE
@click.option("--problems", type=click.IntRange(0, GROUP_PAGE_LIMIT), default=10, show_default=True,
              help="Show this many of the newest members that failed, expired or were cancelled.")
@click.option("--json", "as_json", is_flag=True, help="Print the group and its problem members as JSON.")
@database_url_option
@click.pass_context
def groups_show(ctx: click.Context, name: str, database: str | None, problems: int, as_json: bool,
                database_url: str | None) -> None:
    """Show group NAME: counts by state, a progress bar, the rate and ETA, its callbacks, and its newest
    members that did not succeed (see them with 'finejobs jobs show ID')."""
    with admin_from(ctx, database_url) as admin:
        detail = admin.groups.get(name, database=database, problems=problems)
    if as_json:
        echo_json(detail_json(detail))
        return
    click.echo(describe(detail))


def detail_json(detail: GroupDetail) -> dict[str, Any]:
    """``detail.to_json()`` with passwords masked in the members' errors."""
    data = detail.to_json()
    for problem in data["problems"]:
        if isinstance(problem.get("error"), str):
            problem["error"] = scrub(problem["error"])
    return data


def describe(detail: GroupDetail) -> str:
    g = detail.progress
    fields = [("group", g.name), ("database", g.database), ("state", g.state),
              ("progress", f"{bar(g.done, g.total)}  {g.done} of {g.total} done"),
              *((state, str(getattr(g, state))) for state in ("waiting", "running", "succeeded", "failed", "expired",
                                                                 "cancelled")),
              ("rate", rate(g.per_second)), ("eta", span(g.eta_seconds)),
              ("callbacks", ", ".join(f"on {c}" for c in g.callbacks) or "none"),
              ("created_at", ts(g.created_at)), ("sealed_at", ts(g.sealed_at)),
              ("cancelled_at", ts(g.cancelled_at)), ("finished_at", ts(g.finished_at))]
    lines = fields_text(fields)
    if not detail.problems:
        lines.append("problems: none")
        return "\n".join(lines)
    lines.append(f"problems (newest {len(detail.problems)}):")
    rows = [[str(j.id), j.kind, j.shard, j.state.value, _last_error(j)] for j in detail.problems]
    lines += ["  " + line for line in table(["ID", "KIND", "SHARD", "STATE", "LAST_ERROR"], rows).splitlines()]
    return "\n".join(lines)


def _last_error(job: Job) -> str:
    if not job.errors:
        return "-"
    error = job.errors[-1]
    message = (scrub(error.message).splitlines() or [""])[0]
    return f"{error.error}: {message}"[:120]


@groups.command("seal")
@_NAME
@_DATABASE
@database_url_option
@click.pass_context
def groups_seal(ctx: click.Context, name: str, database: str | None, database_url: str | None) -> None:
    """Seal group NAME: no job joins it any more; it finishes once every member is done (at once if they
    are). For a group its producer never sealed (it crashed mid-way); sealing twice changes nothing."""
    with admin_from(ctx, database_url) as admin:
        progress = admin.groups.seal(name, database=database)
    click.echo(f"group {progress.name} is {progress.state} ({progress.done} of {progress.total} done)")


@groups.command("cancel")
@_NAME
@_DATABASE
@click.option("--reason", default="cancelled by operator", show_default=True,
              callback=text_option("reason", max_chars=MAX_MESSAGE_CHARS),
              help=f"Recorded on each cancelled member (at most {MAX_MESSAGE_CHARS:,} characters).")
@click.option("--yes", "-y", "yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the group's progress after cancelling as JSON.")
@database_url_option
@click.pass_context
def groups_cancel(ctx: click.Context, name: str, database: str | None, reason: str, yes: bool, as_json: bool,
                  database_url: str | None) -> None:
    """Cancel group NAME: seal it and cancel its waiting members (running ones finish as they will). It then
    finishes as cancelled, and its on_failure and on_complete callbacks run. Asks first, unless --yes; a
    group that has already finished is refused.

    \b
    Example:
      finejobs groups cancel renewals-2026-12-07 --reason "wrong tariff table" --yes
    """
    with admin_from(ctx, database_url) as admin:
        before = admin.groups.get(name, database=database, problems=0).progress
        if before.finished:
            raise FinejobsError(f"group {before.name!r} has already finished ({before.state}): nothing to cancel")
        if not yes:
            click.confirm(f"Cancel group {before.name!r}: seal it and cancel its {before.waiting} waiting "
                          f"member(s) ({before.running} running finish)?", abort=True, err=True)
        cancelled = admin.groups.cancel(before.name, reason=reason, database=before.database)
        after = _progress(admin, before)
    if as_json:
        echo_json({**after.to_json(), "cancelled_now": cancelled})
        return
    click.echo(f"group {after.name}: cancelled {cancelled} waiting member(s); it is {after.state} "
               f"({after.done} of {after.total} done)")


def _progress(admin: Admin, group: GroupProgress) -> GroupProgress:
    return admin.groups.get(group.name, database=group.database, problems=0).progress
