"""Only one worker at a time runs each maintenance pass: the pass takes an advisory lock or skips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from finejobs import JobState, Queue
from finejobs.store.tables import _LOCK_RESCUE
from finejobs.testing import FakeClock


def test_rescue_skips_while_another_worker_holds_its_lock(queue: Queue, clock: FakeClock,
                                                           db: psycopg.Connection[Any]) -> None:
    @queue.job("k")
    def k(payload: dict[str, Any]) -> None: ...

    job = k.enqueue({})
    [claimed] = queue.store.job_claim(owner="dead-worker", shard="default", kinds=["k"], limit=1,
                                      lease=timedelta(seconds=30), now=clock())
    assert claimed.id == job.id
    clock.advance(timedelta(minutes=1))

    db.execute("SELECT pg_advisory_lock(%s)", (_LOCK_RESCUE,))  # another worker is mid-pass
    assert queue.store.job_rescue_expired_leases(now=clock()) == {}
    assert queue.get(job.id).state is JobState.RUNNING

    db.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_RESCUE,))
    assert queue.store.job_rescue_expired_leases(now=clock()) == {job.id: JobState.AVAILABLE}
    assert queue.get(job.id).errors[-1].error == "LeaseExpired"
