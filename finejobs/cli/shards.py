"""``finejobs shards ...``: add, list, drop and move shards.

```
finejobs shards add district-1 district-2 district-3
finejobs shards list
finejobs shards drop district-3
finejobs --shard-map shards.toml shards move district-3 --to b
```
"""

from __future__ import annotations

from typing import Any

import click

from finejobs import EnqueueError, ShardInfo, move_shard
from finejobs.cli._common import Seconds, check_shard, database_url_option, echo_json, queue_from, table
from finejobs.sharding import validate_partition_shard

MAX_WAIT = 86_400.0  # shards move --wait: a day
MAX_BATCH = 100_000  # shards move --batch

_STATES = ("scheduled", "available", "running", "succeeded", "failed", "expired", "cancelled")


@click.group()
def shards() -> None:
    """Give shards partitions of their own, list them, drop them, move them between databases.

    A shard without a partition of its own lives in the default partition (finejobs_jobs_other): jobs
    can be enqueued to any valid shard name at any time, and `shards add` is an optimisation an operator
    makes when a shard is busy enough to deserve its own partition. With a shard map, each command
    works in the database the map places the shard in.
    """


def _check_partition_shards(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    for name in value:
        try:
            validate_partition_shard(name)
        except EnqueueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


@shards.command("add")
@click.argument("names", nargs=-1, required=True, callback=_check_partition_shards)
@database_url_option
@click.pass_context
def shards_add(ctx: click.Context, names: tuple[str, ...], database_url: str | None) -> None:
    """Give each shard NAME its own partition (moving its jobs from the default partition).

    Takes the job table's exclusive lock for a moment per shard (workers wait, nothing fails); refuses
    after 10 s if a long transaction holds the table. Every NAME is checked first: a shard whose partition
    would take the name of one of finejobs' own relations ('other': finejobs_jobs_other is the default
    partition) is refused, and its jobs stay in the default partition.
    """
    with queue_from(ctx, database_url) as queue:
        for name in names:
            database = queue.shard_map.database_for(name)
            added = queue.store_of(database).shard_add([name])
            where = f" in database {database}" if len(queue.databases) > 1 else ""
            click.echo(f"{'added' if added else 'exists'}: {name}{where}")


@shards.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per shard and database.")
@database_url_option
@click.pass_context
def shards_list(ctx: click.Context, as_json: bool, database_url: str | None) -> None:
    """Every shard that has a partition or jobs: where it lives and its jobs by state.

    A shard found in a database the map does not place it in (jobs enqueued before the map changed, not
    yet moved) is marked 'stray'.
    """
    with queue_from(ctx, database_url) as queue:
        now = queue.clock()
        found: list[tuple[str, ShardInfo, bool]] = []
        for database in queue.databases:
            for info in queue.store_of(database).shard_list(now=now):
                found.append((database, info, queue.shard_map.database_for(info.name) == database))
    if as_json:
        echo_json([{"shard": info.name, "database": database, "partition": info.partition,
                     "own_partition": info.own_partition, "placed_here": placed, "counts": info.counts}
                    for database, info, placed in found])
        return
    if not found:
        click.echo("no shards")
        return
    rows = [[info.name, database + ("" if placed else " (stray)"), info.partition,
             *(str(info.counts.get(state, 0)) for state in _STATES)]
            for database, info, placed in sorted(found, key=lambda f: (f[1].name, f[0]))]
    click.echo(table(["SHARD", "DATABASE", "PARTITION", *(s.upper() for s in _STATES)], rows))


@shards.command("drop")
@click.argument("name", callback=check_shard)
@click.option("--database", "database", metavar="NAME", default=None,
              help="With a shard map: drop it in this database [default: the one the map places the shard in], "
                   "e.g. the partition a moved shard left behind.")
@database_url_option
@click.pass_context
def shards_drop(ctx: click.Context, name: str, database: str | None, database_url: str | None) -> None:
    """Drop shard NAME's partition. Refused while it has unfinished jobs (waiting or running).

    Its finished jobs are kept: they move to the default partition, where pruning deletes them after
    their retention like any other.
    """
    with queue_from(ctx, database_url) as queue:
        store = queue.store_of(database) if database else queue.store_for(name)
        kept = store.shard_drop(name)
    click.echo(f"dropped: {name} ({kept} finished job(s) kept in the default partition)")


@shards.command("move")
@click.argument("name", callback=check_shard)
@click.option("--to", "target", required=True, metavar="DATABASE", help="The database of the shard map to move to.")
@click.option("--wait", type=Seconds(0, MAX_WAIT), default=60.0, show_default=True,
              help=f"How long to wait for jobs running in the source to finish (they finish there): 0 to "
                   f"{MAX_WAIT:g} (a day).")
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=500, show_default=True,
              help="Jobs moved per transaction.")
@database_url_option
@click.pass_context
def shards_move(ctx: click.Context, name: str, target: str, wait: float, batch: int,
                database_url: str | None) -> None:
    """Move shard NAME's unfinished jobs from the other databases of the shard map into DATABASE, live.

    \b
    The procedure (docs/sharding.md):
      1. make the shard map place NAME in DATABASE, and roll it out to enqueuers and workers;
      2. run this command: it moves waiting jobs in batches (each in the source's outbox first, so
         a crash loses nothing; copied once thanks to a unique moved_from), lets running ones finish
         where they are, and repeats until no other database holds an unfinished job of NAME.
    Workers keep running throughout. Exits 1 if jobs were still running in a source after --wait.
    """
    with queue_from(ctx, database_url) as queue:
        report = move_shard(queue, name, to=target, batch=batch, wait=wait, progress=click.echo)
    moved = ", ".join(f"{n} from {source}" for source, n in report.moved.items() if n) or "nothing to move"
    click.echo(f"moved {name} to {target}: {moved}")
    if report.merged:
        click.echo(f"{report.merged} job(s) not copied: an unfinished job in {target} already held their unique_key")
    if not report.complete:
        left = ", ".join(f"{n} in {source}" for source, n in report.left.items() if n)
        raise click.ClickException(f"{name}: unfinished jobs still in the source after {wait:g}s ({left}); "
                                   "they finish there or come back waiting: run the move again")
