"""The single-job operations of finejobs.store.jobs (cancel, retry, run now) in the form Citus takes: each a
router statement that names the job's shard (found first by its id), without STABLE functions over columns.
On plain PostgreSQL every method here is JobRowsStore's own (``super()``). docs/citus.md.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from finejobs.errors import FinejobsError, JobNotFound
from finejobs.jobs import Job
from finejobs.store import citus
from finejobs.store.jobs import JobRowsStore

_SHARD_OF = sa.text("SELECT shard FROM finejobs_jobs WHERE id = :id")

_CANCEL = sa.text(f"""
    UPDATE finejobs_jobs
    SET state = 'cancelled', finished_at = :now, lease_owner = NULL, lease_expires_at = NULL,
        errors = errors || {citus.error_entry(attempt="attempt", error="'Cancelled'",
                                              message="CAST(:reason AS text)", worker="NULL")}
    WHERE shard = :shard AND id = :id AND state IN ('available', 'running')
    RETURNING *
    """)

_RETRY = sa.text(
    """
    WITH old AS (
        SELECT id, shard, state FROM finejobs_jobs
        WHERE shard = :shard AND id = :id AND state IN ('failed', 'expired', 'cancelled') FOR UPDATE
    )
    UPDATE finejobs_jobs AS j
    SET state = 'available', run_at = :now, finished_at = NULL,
        max_attempts = GREATEST(j.max_attempts, j.attempt + 1),
        expires_at = CASE WHEN j.expires_at IS NOT NULL AND j.expires_at <= :now THEN NULL ELSE j.expires_at END
    FROM old
    WHERE j.shard = :shard AND j.id = old.id AND j.shard = old.shard
    RETURNING j.*, old.state AS old_state
    """
)

_RUN_NOW = sa.text(
    "UPDATE finejobs_jobs SET run_at = :now WHERE shard = :shard AND id = :id AND state = 'available' RETURNING *"
)


class CitusJobOps(JobRowsStore):
    """JobRowsStore's single-job operations, routed to the job's shard on Citus."""

    def _shard_of(self, job_id: int) -> str:
        with self.transaction(autocommit=True) as conn:
            shard = conn.execute(_SHARD_OF, {"id": job_id}).scalar()
        if shard is None:
            raise JobNotFound(f"no job with id {job_id}")
        return str(shard)

    def job_cancel(self, *, job_id: int, now: datetime, reason: str = "cancelled by operator") -> Job:
        if not self.citus:
            return super().job_cancel(job_id=job_id, now=now, reason=reason)
        return self._operate(_CANCEL, job_id=job_id, now=now, reason=reason, verb="cancel",
                             shard=self._shard_of(job_id))

    def job_retry(self, *, job_id: int, now: datetime) -> Job:
        if not self.citus:
            return super().job_retry(job_id=job_id, now=now)
        shard = self._shard_of(job_id)
        try:
            return self._operate(_RETRY, job_id=job_id, now=now, verb="retry", shard=shard)
        except sa.exc.IntegrityError as exc:
            raise FinejobsError(f"cannot retry job {job_id}: another unfinished job holds its unique_key") from exc

    def job_run_now(self, *, job_id: int, now: datetime) -> Job:
        if not self.citus:
            return super().job_run_now(job_id=job_id, now=now)
        return self._operate(_RUN_NOW, job_id=job_id, now=now, verb="run now", shard=self._shard_of(job_id))
