"""The ``finejobs`` command line: migrate, run workers, enqueue, inspect and operate jobs, pause and resume
work, list workers. Every command is a thin view over the operations API (finejobs.admin.Admin).

```
finejobs [--database-url URL] migrate
finejobs worker --app MODULE:ATTR [--shard NAME ...] [--concurrency N] [--poll-interval S] ...
finejobs enqueue KIND --payload JSON [--app MODULE:ATTR] [--shard S] [--run-at ISO] ...
finejobs jobs list [FILTER...] [--cursor C] | show ID | retry|cancel|delete (ID | FILTER... --all-matching)
finejobs stats | workers | paused
finejobs pause --kind K | --shard S [--reason R]        finejobs resume --kind K | --shard S
finejobs schedules list | show | add | update | delete | pause | resume | run-now | skip-next | sync ...
finejobs services check FILE | run FILE [--concurrency N] | list
finejobs groups list [--state S] | show NAME | seal NAME | cancel NAME [--reason R] [--yes]
finejobs pipelines list [--state S] [--name P] | show ID | cancel ID [--reason R] [--yes]
finejobs shards add NAME... | list | drop NAME | move NAME --to DATABASE
finejobs web --app MODULE:ATTR [--host H --port P] [--access FILE]      finejobs hash-password [--token]
```
The database URL comes from ``--database-url`` (on the group or on any command) or from the environment
variable FINEJOBS_DATABASE_URL. With several databases, ``--shard-map FILE`` (or FINEJOBS_SHARD_MAP) names
a TOML shard map instead: migrate, jobs and stats then cover every database in it.
Every error ends as one line on stderr, ``finejobs: error: ...``, with exit status 2 for usage errors and
1 otherwise; passwords in URLs are never printed. Set FINEJOBS_DEBUG=1 to get the traceback of an
unexpected error. Actions are written to the audit log as done by ``cli:<login name>``.

The modules: ``_common`` (the shared plumbing: URLs and passwords, opening queues, tables, parameter types,
the filter options; it imports no other module of the package), ``worker`` (migrate, worker, bench),
``jobs`` (enqueue, jobs ...), ``control`` (stats, pause, resume, paused, workers), ``schedules``, ``groups``,
``pipelines``, ``services``, ``shards``, ``web`` (web, hash-password).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from finejobs import FinejobsError, __version__
from finejobs.cli import control, groups, jobs, pipelines, schedules, services, shards, web, worker
from finejobs.cli._common import DEBUG_ENV, MAP_ENV, Root, database_url_option, fail, load_app


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
      finejobs jobs retry --state failed --error timeout --all-matching
      finejobs pause --shard district-3 --reason "gateway maintenance"
      finejobs stats

    Errors are printed as one line on stderr; the exit status is 2 for usage errors and 1 for
    every other error. Set FINEJOBS_DEBUG=1 to see the traceback of an unexpected error.
    """
    ctx.obj = Root(database_url=database_url, shard_map=shard_map)


for _command in (worker.migrate, worker.worker, jobs.enqueue, jobs.jobs, control.stats, control.pause,
                 control.resume, control.paused, control.workers, schedules.schedules, services.services, groups.groups,
                 pipelines.pipelines, shards.shards, worker.bench, web.web, web.hash_password):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point: run the CLI and return the exit status; every error is one line on stderr."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="finejobs",
                          standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return fail(exc.format_message() + hint, 2)
    except click.ClickException as exc:
        return fail(exc.format_message(), exc.exit_code or 1)
    except click.Abort:
        return fail("aborted", 1)
    except FinejobsError as exc:
        return fail(str(exc) or type(exc).__name__, 1)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        return fail(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)", 1)
    return result if isinstance(result, int) else 0


__all__ = ["cli", "load_app", "main"]
