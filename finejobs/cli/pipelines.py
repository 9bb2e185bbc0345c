"""``finejobs pipelines list | show | cancel``: thin views over the pipeline operations (``Admin.pipelines``,
finejobs.admin.pipelines): runs, each step's progress (chunks and items total / done / failed / skipped).

```
finejobs pipelines list --state running
finejobs pipelines show 17
finejobs pipelines cancel 17 --reason "wrong parameters" --yes
```
Runs live in the database of their pipeline's shard: with a shard map, ``--database`` names it (default: the
shard map's default database).
"""

from __future__ import annotations

import json
from typing import Any

import click

from finejobs.admin.pipelines import PIPELINE_PAGE_LIMIT, RUN_STATES
from finejobs.cli._common import admin_from, database_url_option, echo_json, scrub, table, text_option, ts
from finejobs.cli.groups import bar, fields_text
from finejobs.errors import FinejobsError
from finejobs.limits import MAX_MESSAGE_CHARS
from finejobs.pipeline_info import PipelineInfo, StepProgress

MAX_RUN_ID = 2**63 - 1


def step_progress(step: StepProgress) -> tuple[int, int]:
    """(finished, total) of a step: its items once it has any, else its chunks."""
    if step.items_total:
        return step.items_done + step.items_failed + step.items_skipped, step.items_total
    return step.chunks_done + step.chunks_failed + step.chunks_skipped, step.chunks_total


def step_bar(step: StepProgress) -> str:
    return bar(*step_progress(step), empty=1.0 if step.state == "done" else 0.0)


def current_step(run: PipelineInfo) -> StepProgress | None:
    """The step a run is at: the first not done (the last one once every step is done)."""
    return next((s for s in run.steps if s.state != "done"), run.steps[-1] if run.steps else None)


def run_json(run: PipelineInfo) -> dict[str, Any]:
    """``run.to_json()`` with passwords masked in its error."""
    data = run.to_json()
    if isinstance(data.get("error"), str):
        data["error"] = scrub(data["error"])
    return data


def _check_run_id(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_RUN_ID:
        raise click.BadParameter(f"{value} is not a pipeline run id (ids are 1 to {MAX_RUN_ID})", ctx=ctx, param=param)
    return value


_RUN_ID = click.argument("run_id", metavar="ID", type=int, callback=_check_run_id)
_DATABASE = click.option("--database", "database", metavar="NAME", default=None,
                         help="With a shard map: the database holding the runs [default: the shard map's default].")


@click.group()
def pipelines() -> None:
    """Pipeline runs (queue.pipeline(name)): their state and each step's progress in chunks and items; cancel
    a run. See docs/pipelines.md."""


@pipelines.command("list")
@click.option("--state", type=click.Choice(RUN_STATES), default=None, help="Only runs in this state.")
@click.option("--name", default=None, metavar="PIPELINE", callback=text_option("name", max_chars=200),
              help="Only runs of this pipeline.")
@click.option("--limit", type=click.IntRange(1, PIPELINE_PAGE_LIMIT), default=50, show_default=True,
              help="At most this many, newest first.")
@click.option("--before", type=int, default=None, callback=_check_run_id, metavar="ID",
              help="Only runs older than run ID (the listing prints where the next page starts).")
@_DATABASE
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: {"pipelines": [...], "next_before": ID or null}.')
@database_url_option
@click.pass_context
def pipelines_list(ctx: click.Context, state: str | None, name: str | None, limit: int, before: int | None,
                   database: str | None, as_json: bool, database_url: str | None) -> None:
    """List pipeline runs, newest first: state, steps done, the step it is at and its progress (items, or
    chunks before it has items), items failed and skipped over every step."""
    with admin_from(ctx, database_url) as admin:
        page = admin.pipelines.list(state=state, name=name, limit=limit, before=before, database=database)
    if as_json:
        echo_json({"pipelines": [run_json(r) for r in page.pipelines], "next_before": page.next_before})
        return
    if not page.pipelines:
        click.echo("no pipeline runs")
    else:
        rows = []
        for run in page.pipelines:
            step = current_step(run)
            done = sum(1 for s in run.steps if s.state == "done")
            rows.append([str(run.id), run.name, run.state, f"{done}/{len(run.steps)}", step.name if step else "-",
                         step_bar(step) if step else "-",
                         str(sum(s.items_failed for s in run.steps)), str(sum(s.items_skipped for s in run.steps)),
                         ts(run.created_at), ts(run.finished_at)])
        click.echo(table(["ID", "PIPELINE", "STATE", "STEPS", "STEP", "PROGRESS", "FAILED", "SKIPPED", "CREATED",
                          "FINISHED"], rows))
    if page.next_before is not None:
        click.echo(f"next page: --before {page.next_before}", err=True)


@pipelines.command("show")
@_RUN_ID
@_DATABASE
@click.option("--json", "as_json", is_flag=True, help="Print the run and its steps as JSON.")
@database_url_option
@click.pass_context
def pipelines_show(ctx: click.Context, run_id: int, database: str | None, as_json: bool,
                   database_url: str | None) -> None:
    """Show pipeline run ID: its state, params, result or error, and each step with a progress bar, its
    chunks and items done of total, failed and skipped."""
    with admin_from(ctx, database_url) as admin:
        run = admin.pipelines.get(run_id, database=database)
    if as_json:
        echo_json(run_json(run))
        return
    click.echo(describe(run))


def describe(run: PipelineInfo) -> str:
    fields = [("run", str(run.id)), ("pipeline", run.name), ("state", run.state), ("shard", run.shard),
              ("database", run.database), ("created_at", ts(run.created_at)), ("finished_at", ts(run.finished_at)),
              ("error", scrub(run.error) if run.error else "-"),
              ("params", json.dumps(run.params, default=str)[:500]),
              ("result", "-" if run.result is None else json.dumps(run.result, default=str)[:500])]
    lines = fields_text(fields)
    rows = [[f"{s.step + 1}. {s.name}" + (" (reduction)" if s.reduce else "" if s.gated else " (streaming)"), s.state,
             step_bar(s), f"{s.chunks_done}/{s.chunks_total}", f"{s.items_done}/{s.items_total}",
             f"{s.items_failed} ({s.chunks_failed})", f"{s.items_skipped} ({s.chunks_skipped})"] for s in run.steps]
    lines.append("steps:")
    lines += ["  " + line for line in table(["STEP", "STATE", "PROGRESS", "CHUNKS", "ITEMS", "FAILED (CHUNKS)",
                                             "SKIPPED (CHUNKS)"], rows).splitlines()]
    return "\n".join(lines)


@pipelines.command("cancel")
@_RUN_ID
@_DATABASE
@click.option("--reason", default="cancelled by operator", show_default=True,
              callback=text_option("reason", max_chars=MAX_MESSAGE_CHARS),
              help=f"Recorded as the run's error (at most {MAX_MESSAGE_CHARS:,} characters).")
@click.option("--yes", "-y", "yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the cancelled run as JSON.")
@database_url_option
@click.pass_context
def pipelines_cancel(ctx: click.Context, run_id: int, database: str | None, reason: str, yes: bool, as_json: bool,
                     database_url: str | None) -> None:
    """Cancel pipeline run ID: its waiting chunk jobs are cancelled, running ones commit nothing when they
    end, and no later step starts. Asks first, unless --yes; a run that has already ended is refused.

    \b
    Example:
      finejobs pipelines cancel 17 --reason "wrong export parameters" --yes
    """
    with admin_from(ctx, database_url) as admin:
        ops = admin.pipelines
        run = ops.get(run_id, database=database)
        if run.finished:
            raise FinejobsError(f"cannot cancel pipeline run {run.id}: it is {run.state}")
        if not yes:
            step = current_step(run)
            at = f", at step {step.step + 1} of {len(run.steps)}: {step.name}" if step else ""
            click.confirm(f"Cancel pipeline run {run.id} ({run.name}{at})?", abort=True, err=True)
        done = ops.cancel(run.id, reason, database=run.database)
    if as_json:
        echo_json(run_json(done))
        return
    click.echo(f"pipeline run {done.id} ({done.name}) is {done.state}")
