"""``finejobs enqueue`` and ``finejobs jobs list | show | retry | cancel | delete``: thin views over
finejobs.admin.Admin (jobs, job, retry, cancel, delete and their ``*_matching`` forms for a filter)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from finejobs import Job, Queue, Retry
from finejobs.admin import PAGE_LIMIT, Admin, BulkResult
from finejobs.cli._common import (
    APP_ENV,
    MAX_KIND_CHARS,
    AwareDateTime,
    F,
    admin_from,
    check_job_id,
    check_schemas,
    check_shard,
    configure,
    database_option,
    database_url_option,
    echo_json,
    filter_options,
    job_filter,
    job_json,
    load_app,
    names_a_database,
    queue_from,
    remember_secret,
    scrub,
    table,
    text_option,
    ts,
)
from finejobs.limits import MAX_ATTEMPTS, MAX_MESSAGE_CHARS, MAX_PAYLOAD_DEPTH, MAX_UNIQUE_KEY_BYTES

MAX_LIST_LIMIT = 1_000_000  # jobs list --limit (fetched in pages of PAGE_LIMIT)


# ---------------------------------------------------------------- enqueue


@click.command()
@click.argument("kind", callback=text_option("job kind name", max_chars=MAX_KIND_CHARS))
@click.option("--payload", default="{}", show_default=True, metavar="JSON",
              help="The payload as JSON ('-' reads it from stdin).")
@click.option("--app", envvar=APP_ENV, show_envvar=True, default=None, metavar="MODULE:ATTR",
              help="Validate the payload through this app's job kind (its model, priority, expiry "
                   "and retry policy apply).")
@click.option("--shard", default=None, metavar="NAME", callback=check_shard, help="Shard [default: default].")
@click.option("--run-at", type=AwareDateTime(), default=None,
              help="Do not run before this time (ISO 8601 with a timezone).")
@click.option("--expires-at", type=AwareDateTime(), default=None,
              help="Never start after this time (ISO 8601 with a timezone); the job ends 'expired'.")
@click.option("--unique-key", default=None, metavar="KEY",
              callback=text_option("unique_key", max_bytes=MAX_UNIQUE_KEY_BYTES),
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
        if names_a_database(ctx, database_url):
            configure(ctx, queue, database_url)
        try:
            queue.kind(kind)  # an unknown kind fails before touching the database
            remember_secret(queue.url)
            check_schemas(queue)
            job = queue.enqueue(kind, data, **options)
        finally:
            queue.close()
    else:
        with queue_from(ctx, database_url) as queue:
            _register_untyped(queue, kind, ctx, max_attempts=max_attempts or Retry().max_attempts)
            job = queue.enqueue(kind, data, **options)
    if as_json:
        echo_json(job_json(job))
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


# ---------------------------------------------------------------- jobs list, show


@click.group()
def jobs() -> None:
    """List, show, retry, cancel and delete jobs: one by ID, or every job matching a filter."""


@jobs.command("list")
@filter_options
@database_option
@click.option("--limit", type=click.IntRange(1, MAX_LIST_LIMIT), default=50, show_default=True,
              help="At most this many.")
@click.option("--cursor", default=None, metavar="CURSOR", callback=text_option("cursor", max_chars=40),
              help="Go on from where a previous listing stopped (it prints the cursor of the next page).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of jobs (every field); the next page's cursor goes to stderr.")
@click.option("--json-page", "as_page", is_flag=True,
              help='Print JSON: {"jobs": [...], "next_cursor": CURSOR or null}.')
@database_url_option
@click.pass_context
def jobs_list(ctx: click.Context, /, database: str | None, limit: int, cursor: str | None, as_json: bool,
              as_page: bool, database_url: str | None, **options: Any) -> None:
    """List jobs matching every filter option given, newest first, as a table.

    Columns: id, kind, shard, state, attempt/max attempts, run_at (UTC) and the type of the last error.
    Pages are read by keyset (never OFFSET): when more jobs may match than --limit, the cursor of the next
    page is printed on stderr; pass it to --cursor.

    \b
    Examples:
      finejobs jobs list --state failed --kind dosage.alert --error timeout
      finejobs jobs list --shard district-3 --finished-after 2026-11-22T00:00:00Z --limit 200
    """
    filt = job_filter(options, database)
    with admin_from(ctx, database_url) as admin:
        found: list[Job] = []
        while True:
            page = admin.jobs(filt, cursor=cursor, limit=min(PAGE_LIMIT, limit - len(found)))
            found += page.jobs
            cursor = page.next_cursor
            if cursor is None or len(found) >= limit:
                break
    if as_page:
        echo_json({"jobs": [job_json(j) for j in found], "next_cursor": cursor})
        return
    if as_json:
        echo_json([job_json(job) for job in found])
    elif not found:
        click.echo("no jobs")
    else:
        rows = [[str(j.id), j.kind, j.shard, j.state.value, f"{j.attempt}/{j.max_attempts}", ts(j.run_at),
                 j.errors[-1].error if j.errors else "-"] for j in found]
        click.echo(table(["ID", "KIND", "SHARD", "STATE", "ATTEMPT", "RUN_AT", "LAST_ERROR"], rows))
    if cursor is not None:
        click.echo(f"next page: --cursor {cursor}", err=True)


@jobs.command("show")
@click.argument("job_id", metavar="ID", type=int, callback=check_job_id)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@database_option
@database_url_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int, as_json: bool, database: str | None, database_url: str | None) -> None:
    """Show every field of job ID, and each attempt's error with its traceback."""
    with admin_from(ctx, database_url) as admin:
        job = admin.job(job_id, database=database)
    if as_json:
        echo_json(job_json(job))
        return
    click.echo(_describe(job))


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
        lines.append(f"  attempt {err.attempt} at {err.at.isoformat()}{worker}: {err.error}: {scrub(err.message)}")
        if err.traceback:
            lines.extend("    " + line for line in scrub(err.traceback).rstrip().splitlines())
    return "\n".join(lines)


# ---------------------------------------------------------------- retry, cancel, delete: one job or a filter


def _action_options(function: F) -> F:
    function = click.option("--json", "as_json", is_flag=True,
                            help="Print the job, or the bulk result, as JSON.")(function)
    function = click.option("--dry-run", is_flag=True,
                            help="With filter options: only print how many jobs would be touched.")(function)
    function = click.option("--all-matching", is_flag=True,
                            help="With filter options: act on every matching job (not just a page).")(function)
    function = click.argument("job_id", metavar="[ID]", type=int, required=False, callback=check_job_id)(function)
    return filter_options(database_option(database_url_option(function)))


_PAST = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}


def _act(ctx: click.Context, action: str, options: dict[str, Any], one: Callable[[Admin, int, str | None], Job],
         many: Callable[[Admin, Any, bool], BulkResult]) -> None:
    job_id, database, as_json = options.pop("job_id"), options.pop("database"), options.pop("as_json")
    all_matching, dry_run, url = options.pop("all_matching"), options.pop("dry_run"), options.pop("database_url")
    filt = job_filter(options, database)
    by_filter = not filt.but(database=None).is_empty
    if job_id is not None:
        if by_filter or all_matching or dry_run:
            raise click.UsageError("give a job ID, or filter options with --all-matching (or --dry-run), not both")
        with admin_from(ctx, url) as admin:
            job = one(admin, job_id, database)
        if as_json:
            echo_json(job_json(job))
        elif action == "delete":
            click.echo(f"job {job.id} deleted (it was {job.state.value})")
        elif action == "retry":
            click.echo(f"job {job.id} is {job.state.value} (attempt {job.attempt}/{job.max_attempts})")
        else:
            click.echo(f"job {job.id} is {job.state.value}")
        return
    if not by_filter:
        raise click.UsageError(f"{action} what? give a job ID, or filter options (e.g. --state failed) with "
                               "--all-matching or --dry-run")
    if not (all_matching or dry_run):
        raise click.UsageError(f"to {action} every job matching the filter, add --all-matching "
                               "(--dry-run counts them first)")
    with admin_from(ctx, url) as admin:
        result = many(admin, filt, dry_run)
    if as_json:
        echo_json(result.to_json())
        return
    more = "at least " if result.at_least else ""
    if result.dry_run:
        click.echo(f"would {action} {more}{result.matched} job(s) (dry run: nothing changed)")
    else:
        click.echo(f"{_PAST[action]} {result.changed} job(s)")


@jobs.command("retry")
@_action_options
@click.pass_context
def jobs_retry(ctx: click.Context, /, **options: Any) -> None:
    """Run a failed, expired or cancelled job again now, allowing one more attempt: job ID, or every such
    job matching the filter options (with --all-matching; --dry-run counts them).

    \b
    Examples:
      finejobs jobs retry 42
      finejobs jobs retry --state failed --error timeout --dry-run
      finejobs jobs retry --state failed --kind dosage.alert --all-matching
    """
    _act(ctx, "retry", options, lambda a, i, d: a.retry(i, database=d),
         lambda a, f, dry: a.retry_matching(f, dry_run=dry))


@jobs.command("cancel")
@_action_options
@click.option("--reason", default="cancelled by operator", show_default=True,
              callback=text_option("reason", max_chars=MAX_MESSAGE_CHARS),
              help=f"Recorded on the job (at most {MAX_MESSAGE_CHARS:,} characters).")
@click.pass_context
def jobs_cancel(ctx: click.Context, /, reason: str, **options: Any) -> None:
    """Cancel a waiting or running job: job ID, or every such job matching the filter options (with
    --all-matching; --dry-run counts them).

    A running handler is not interrupted, but its outcome is ignored: the job stays cancelled.
    """
    _act(ctx, "cancel", options, lambda a, i, d: a.cancel(i, reason, database=d),
         lambda a, f, dry: a.cancel_matching(f, reason, dry_run=dry))


@jobs.command("delete")
@_action_options
@click.pass_context
def jobs_delete(ctx: click.Context, /, **options: Any) -> None:
    """Delete a job that is not running (its record is gone: prefer cancel for unfinished work): job ID,
    or every such job matching the filter options (with --all-matching; --dry-run counts them)."""
    _act(ctx, "delete", options, lambda a, i, d: a.delete(i, database=d),
         lambda a, f, dry: a.delete_matching(f, dry_run=dry))
