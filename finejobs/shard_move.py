"""Moving a shard's unfinished jobs to another database, live: ``finejobs shards move NAME --to B``.

The procedure (docs/sharding.md tells the operator's side):

1. In each source database, waiting jobs of the shard leave the job table for the outbox
   ``finejobs_shard_moves`` in one local transaction (``FOR UPDATE SKIP LOCKED``: jobs a worker is
   claiming are left alone). From then on no worker there can claim them, and nothing is lost if the
   mover dies: the outbox is durable.
2. The outbox rows are inserted into the target database. Each carries ``moved_from = "<source>/<id>"``,
   unique per shard in the target: copying the same row twice (a mover that died after this step and was
   run again) inserts it once.
3. Only then are the outbox rows deleted from the source.

A job that is running in a source stays there and finishes there (its worker still holds it); if it is
retried it waits again and the next pass moves it. The mover repeats until no source holds an unfinished
job of the shard (or ``wait`` runs out), so jobs that enqueuers still routing with the old map add
meanwhile are moved too. Workers keep running throughout: a job is always in exactly one place where
it can be claimed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finejobs.errors import ConfigurationError
from finejobs.sharding import validate_shard_name
from finejobs.store import JobStore

if TYPE_CHECKING:
    from finejobs.queue import Queue


@dataclass
class MoveReport:
    """What a move did."""

    shard: str
    target: str
    moved: dict[str, int] = field(default_factory=dict)  # source database -> jobs now in the target
    merged: int = 0  # not inserted: an unfinished job in the target already held their unique_key
    left: dict[str, int] = field(default_factory=dict)  # source database -> unfinished jobs still there

    @property
    def complete(self) -> bool:
        return not any(self.left.values())


def move_shard(
    queue: Queue,
    shard: str,
    *,
    to: str,
    batch: int = 500,
    wait: float = 30.0,
    poll: float = 0.2,
    progress: Callable[[str], None] | None = None,
) -> MoveReport:
    """Move every unfinished job of ``shard`` from the other databases of the queue's shard map into ``to``.

    Returns when no other database holds an unfinished job of the shard, or after ``wait`` seconds
    (jobs still running in a source then finish there; run the move again for any that come back).
    """
    validate_shard_name(shard)
    names = queue.databases
    if to not in names:
        raise ConfigurationError(f"unknown database {to!r}; the shard map declares {', '.join(names)}")
    if len(names) < 2:
        raise ConfigurationError("moving a shard needs a shard map with at least two databases")
    say = progress or (lambda message: None)
    report = MoveReport(shard=shard, target=to)
    deadline = time.monotonic() + wait
    while True:
        for name in names:
            source = queue.store_of(name)
            # An interrupted earlier move may have left rows in any database's outbox, the target's too.
            _send_outbox(queue, source, name, shard, batch, report, say)
            if name == to:
                continue
            # Leases that ran out in a source (nobody may serve the shard there any more) come back first.
            source.job_rescue_expired_leases(now=queue.clock(), shards=[shard])
            while source.shard_move_stage(shard=shard, target=to, limit=batch, now=queue.clock()):
                _send_outbox(queue, source, name, shard, batch, report, say)
        report.left = {name: queue.store_of(name).shard_unfinished(shard=shard) for name in names if name != to}
        if report.complete or time.monotonic() >= deadline:
            return report
        say(f"waiting for {sum(report.left.values())} running job(s) of {shard} to finish in "
            f"{', '.join(n for n, left in report.left.items() if left)}")
        time.sleep(poll)


def _send_outbox(queue: Queue, source: JobStore, source_name: str, shard: str, batch: int, report: MoveReport,
                 say: Callable[[str], None]) -> None:
    """Copy the source's outbox rows of ``shard`` to their target, then delete them from the outbox.

    Rows bound for another target (an earlier move to elsewhere that was interrupted) go where they were
    bound: they may already be there.
    """
    while True:
        pending = source.shard_move_pending(shard=shard, limit=batch)
        if not pending:
            return
        by_target: dict[str, list[tuple[int, dict[str, object]]]] = {}
        for job_id, target, row in pending:
            by_target.setdefault(target, []).append((job_id, row))
        for target, rows in by_target.items():
            inserted, present = queue.store_of(target).job_insert_moved(
                shard=shard, rows=[row for _, row in rows], source=source_name, now=queue.clock())
            source.shard_move_done(job_ids=[job_id for job_id, _ in rows])
            report.moved[source_name] = report.moved.get(source_name, 0) + present
            report.merged += len(rows) - present
            say(f"{shard}: {present} job(s) from {source_name} now in {target} ({inserted} inserted by this pass)")
