"""``finejobs stats``, ``pause``, ``resume``, ``paused`` and ``workers``: thin views over finejobs.admin.Admin
(stats, pause, resume, paused, workers)."""

from __future__ import annotations

import click

from finejobs import JobState
from finejobs.admin import LocalScheduleInfo, Overview
from finejobs.cli._common import (
    MAX_KIND_CHARS,
    admin_from,
    ago,
    check_shard,
    database_url_option,
    echo_json,
    table,
    text_option,
    ts,
)
from finejobs.limits import MAX_MESSAGE_CHARS, log_safe


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts, lag and pauses as JSON.")
@database_url_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool, database_url: str | None) -> None:
    """Count jobs by state, by kind and by shard ('scheduled' = waiting for a future run_at), summed over
    every database of the shard map; per shard, the lag (age of the oldest job that may run now) and
    whether it is paused; and every pause (`finejobs paused`)."""
    with admin_from(ctx, database_url) as admin:
        overview = admin.stats(fresh=True)
    if as_json:
        echo_json(overview.to_json())
        return
    click.echo(_stats_text(overview))


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _stats_text(overview: Overview) -> str:
    states = [s.value for s in JobState]
    parts = [f"total: {overview.total}" + (" (finished states counted up to a cap)" if overview.capped else ""), "",
             table(["STATE", "JOBS"], [[s, str(overview.by_state.get(s, 0))] for s in states])]
    paused_shards = {p.shard for p in overview.paused if p.kind is None}
    for title, groups in (("KIND", overview.by_kind), ("SHARD", overview.by_shard)):
        if not groups:
            continue
        used = [s for s in states if any(g.get(s) for g in groups.values())]
        rows = [[name, *(str(g.get(s, 0)) for s in used), str(sum(g.values()))]
                for name, g in sorted(groups.items())]
        headers = [title, *(s.upper() for s in used), "TOTAL"]
        if title == "SHARD":
            headers += ["LAG", "PAUSED"]
            rows = [[*row, _lag(overview.lag_seconds.get(row[0])), "yes" if row[0] in paused_shards else "-"]
                    for row in rows]
        parts += ["", table(headers, rows)]
    if overview.paused:
        parts += ["", "paused: " + "; ".join(p.describe() for p in overview.paused)]
    return "\n".join(parts)


_KIND = click.option("--kind", default=None, metavar="KIND", callback=text_option("kind", max_chars=MAX_KIND_CHARS),
                     help="A job kind (with --shard: only within that shard).")
_SHARD = click.option("--shard", default=None, metavar="NAME", callback=check_shard,
                      help="A shard (with --kind: only that kind within it).")


def _what(ctx: click.Context, kind: str | None, shard: str | None) -> None:
    if kind is None and shard is None:
        raise click.UsageError("name a kind (--kind), a shard (--shard), or both", ctx=ctx)


def _describe(kind: str | None, shard: str | None) -> str:
    if kind and shard:
        return f"kind {kind} in shard {shard}"
    return f"kind {kind}" if kind else f"shard {shard}"


@click.command()
@_KIND
@_SHARD
@click.option("--reason", default=None, callback=text_option("reason", max_chars=MAX_MESSAGE_CHARS),
              help="Why, shown by `finejobs paused`.")
@database_url_option
@click.pass_context
def pause(ctx: click.Context, kind: str | None, shard: str | None, reason: str | None,
          database_url: str | None) -> None:
    """Stop workers claiming jobs of a kind, a shard, or a kind within a shard.

    Every worker of every process stops claiming them within about a second; running jobs finish.
    The pause is stored: it survives worker restarts until `finejobs resume`. Pausing twice is harmless.

    \b
    Examples:
      finejobs pause --shard district-3 --reason "gateway maintenance"
      finejobs pause --kind dosage.alert
      finejobs pause --kind dosage.alert --shard district-3
    """
    _what(ctx, kind, shard)
    with admin_from(ctx, database_url) as admin:
        done = admin.pause(kind=kind, shard=shard, reason=reason)
    click.echo(f"paused {done.describe()}" + (f" ({done.reason})" if done.reason else ""))


@click.command()
@_KIND
@_SHARD
@database_url_option
@click.pass_context
def resume(ctx: click.Context, kind: str | None, shard: str | None, database_url: str | None) -> None:
    """Let workers claim a paused kind, shard, or kind within a shard again (name it as it was paused)."""
    _what(ctx, kind, shard)
    with admin_from(ctx, database_url) as admin:
        removed = admin.resume(kind=kind, shard=shard)
    click.echo(f"resumed {_describe(kind, shard)}" if removed else f"{_describe(kind, shard)} was not paused")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@database_url_option
@click.pass_context
def paused(ctx: click.Context, as_json: bool, database_url: str | None) -> None:
    """List what is paused: kind, shard (- means any), since when, by whom and why."""
    with admin_from(ctx, database_url) as admin:
        found = admin.paused()
    if as_json:
        echo_json([p.to_json() for p in found])
        return
    if not found:
        click.echo("nothing is paused")
        return
    rows = [[p.kind or "-", p.shard or "-", ts(p.paused_at), p.paused_by or "-", p.reason or "-"] for p in found]
    click.echo(table(["KIND", "SHARD", "SINCE", "BY", "REASON"], rows))


@click.command()
@click.option("--alive", "only_alive", is_flag=True, help="Only workers still refreshing their row.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (every field, counters included).")
@database_url_option
@click.pass_context
def workers(ctx: click.Context, only_alive: bool, as_json: bool, database_url: str | None) -> None:
    """List the workers in the registry: id, host, pid, shards, kinds, concurrency, jobs in flight, when
    last seen, and whether it is alive or gone (not seen for a while: it died without a clean stop).
    Then the local schedules each worker process runs (queue.local_schedule): last run, its outcome, next
    run, runs and skipped ticks (as of the row's last refresh, every 5 s).

    A worker that stops cleanly removes its row. The registry is for people: rescuing the jobs of a dead
    worker works from leases alone.
    """
    with admin_from(ctx, database_url) as admin:
        found = [w for w in admin.workers() if w.alive or not only_alive]
        now = admin.queue.clock()
    if as_json:
        echo_json([w.to_json() for w in found])
        return
    if not found:
        click.echo("no workers")
        return
    rows = [[w.id, w.host, str(w.pid), ",".join(w.shards) if w.shards is not None else "*",
             ",".join(w.kinds) or "-", str(w.concurrency), str(w.in_flight), ago(w.seen_at, now),
             "alive" if w.alive else "gone"] for w in found]
    click.echo(table(["ID", "HOST", "PID", "SHARDS", "KINDS", "CONCURRENCY", "IN_FLIGHT", "SEEN", "STATUS"], rows))
    local = [[w.id, entry.name, entry.rule or "-", ts(entry.last_run_at) if entry.last_run_at else "-",
              _outcome(entry), ts(entry.next_run_at) if entry.next_run_at else "-", str(entry.runs),
              str(entry.skipped)]
             for w in found for entry in w.local_schedules]
    if local:
        click.echo("\nlocal schedules (run in each worker process):")
        click.echo(table(["WORKER", "SCHEDULE", "RULE", "LAST_RUN", "OUTCOME", "NEXT_RUN", "RUNS", "SKIPPED"], local))


def _outcome(entry: LocalScheduleInfo) -> str:
    if entry.running:
        return "running"
    outcome = entry.last_outcome or "-"
    return f"{outcome}: {log_safe(entry.last_error)[:80]}" if outcome == "error" and entry.last_error else outcome
