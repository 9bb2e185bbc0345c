-- finejobs 0001: the job table.
-- One row per work item. "available" covers both waiting states: a job is "scheduled" while its run_at
-- is in the future and "available" once it may run (Job.state reports which).

CREATE TABLE finejobs_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text        NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 200),
    shard            text        NOT NULL DEFAULT 'default' CHECK (shard ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state            text        NOT NULL DEFAULT 'available'
                     CHECK (state IN ('available', 'running', 'succeeded', 'failed', 'expired', 'cancelled')),
    priority         smallint    NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    unique_key       text,
    lease_owner      text,
    lease_expires_at timestamptz,
    errors           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CONSTRAINT finejobs_jobs_attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts),
    CONSTRAINT finejobs_jobs_lease_only_when_running CHECK ((state = 'running') = (lease_owner IS NOT NULL))
);

-- Claimable rows only, in the order the claim takes them: per shard, higher priority first, then oldest
-- run_at. Claims name one shard (an equality), so this ordered scan is the plan whatever the statistics say.
CREATE INDEX finejobs_jobs_claim_idx ON finejobs_jobs (shard, priority DESC, run_at, id) WHERE state = 'available';
-- At most one unfinished job per unique_key.
CREATE UNIQUE INDEX finejobs_jobs_unique_key_idx ON finejobs_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running');
-- Maintenance: expiry of waiting jobs, rescue of lost leases, pruning of finished jobs.
CREATE INDEX finejobs_jobs_expiry_idx ON finejobs_jobs (expires_at)
    WHERE state = 'available' AND expires_at IS NOT NULL;
CREATE INDEX finejobs_jobs_lease_idx ON finejobs_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX finejobs_jobs_finished_idx ON finejobs_jobs (state, finished_at)
    WHERE state IN ('succeeded', 'failed', 'expired', 'cancelled');
