-- finejobs 0004: the job table, LIST-partitioned by shard.
-- Every shard without a partition of its own lives in the DEFAULT partition finejobs_jobs_other, so enqueue
-- never runs DDL (apps and workers may run with a DML-only role). `finejobs shards add NAME` gives a shard its
-- own partition and moves its rows there; claims, rescues, expiry and pruning of one shard then touch only
-- that partition.
--
-- A unique index on a partitioned table must contain the partition key, so the primary key is (id, shard),
-- and unique_key and the schedule tick are unique per shard (a routing rule sends equal payloads to the same
-- shard). Ids still come from one identity sequence: they stay unique in this database.
--
-- Every row of the old table is copied, ids and all, in this one transaction.

ALTER TABLE finejobs_jobs RENAME TO finejobs_jobs_0003;
ALTER TABLE finejobs_jobs_0003 RENAME CONSTRAINT finejobs_jobs_pkey TO finejobs_jobs_0003_pkey;
ALTER SEQUENCE finejobs_jobs_id_seq RENAME TO finejobs_jobs_0003_id_seq;
DROP INDEX finejobs_jobs_claim_idx, finejobs_jobs_unique_key_idx, finejobs_jobs_expiry_idx, finejobs_jobs_lease_idx,
    finejobs_jobs_finished_idx, finejobs_jobs_schedule_tick_idx, finejobs_jobs_schedule_unfinished_idx;

CREATE TABLE finejobs_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY,
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
    schedule_id      bigint,
    fire_at          timestamptz,
    result           text,
    claims           integer     NOT NULL DEFAULT 0,
    -- "<database>/<id>" of the job this one was moved from by `finejobs shards move` (NULL otherwise).
    moved_from       text,
    CONSTRAINT finejobs_jobs_pkey PRIMARY KEY (id, shard),
    CONSTRAINT finejobs_jobs_attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts),
    CONSTRAINT finejobs_jobs_lease_only_when_running CHECK ((state = 'running') = (lease_owner IS NOT NULL))
) PARTITION BY LIST (shard);

CREATE TABLE finejobs_jobs_other PARTITION OF finejobs_jobs DEFAULT;

-- The same indexes as before (each partition gets its own copy), with the shard added to the unique ones.
CREATE INDEX finejobs_jobs_claim_idx ON finejobs_jobs (shard, priority DESC, run_at, id) WHERE state = 'available';
CREATE UNIQUE INDEX finejobs_jobs_unique_key_idx ON finejobs_jobs (shard, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running');
CREATE INDEX finejobs_jobs_expiry_idx ON finejobs_jobs (expires_at)
    WHERE state = 'available' AND expires_at IS NOT NULL;
CREATE INDEX finejobs_jobs_lease_idx ON finejobs_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX finejobs_jobs_finished_idx ON finejobs_jobs (state, finished_at)
    WHERE state IN ('succeeded', 'failed', 'expired', 'cancelled');
CREATE UNIQUE INDEX finejobs_jobs_schedule_tick_idx ON finejobs_jobs (shard, schedule_id, fire_at)
    WHERE schedule_id IS NOT NULL;
CREATE INDEX finejobs_jobs_schedule_unfinished_idx ON finejobs_jobs (schedule_id)
    WHERE schedule_id IS NOT NULL AND state IN ('available', 'running');
-- A moved job is inserted at most once (moving is resumable: see finejobs_shard_moves).
CREATE UNIQUE INDEX finejobs_jobs_moved_from_idx ON finejobs_jobs (shard, moved_from) WHERE moved_from IS NOT NULL;

INSERT INTO finejobs_jobs (id, kind, shard, payload, state, priority, run_at, expires_at, attempt, max_attempts,
                           unique_key, lease_owner, lease_expires_at, errors, created_at, started_at, finished_at,
                           schedule_id, fire_at, result, claims)
OVERRIDING SYSTEM VALUE
SELECT id, kind, shard, payload, state, priority, run_at, expires_at, attempt, max_attempts, unique_key,
       lease_owner, lease_expires_at, errors, created_at, started_at, finished_at, schedule_id, fire_at, result,
       claims
FROM finejobs_jobs_0003;

-- Ids go on after the highest ever handed out (pruned jobs' ids are not reused).
SELECT setval(pg_get_serial_sequence('finejobs_jobs', 'id'), v)
FROM (SELECT GREATEST((SELECT max(id) FROM finejobs_jobs_0003),
                      (SELECT CASE WHEN is_called THEN last_value END FROM finejobs_jobs_0003_id_seq)) AS v) AS x
WHERE v IS NOT NULL;

DROP TABLE finejobs_jobs_0003;

-- The outbox of `finejobs shards move`, in the source database: a waiting job is moved here (out of
-- finejobs_jobs, so no worker here can claim it) in one transaction, copied into the target database (where
-- the unique moved_from makes a second copy impossible), and only then deleted from here. A move that was
-- interrupted leaves its rows here, and the next `finejobs shards move` of that shard finishes them first.
CREATE TABLE finejobs_shard_moves (
    job_id    bigint      PRIMARY KEY,
    shard     text        NOT NULL,
    target    text        NOT NULL,
    job       jsonb       NOT NULL,
    moved_at  timestamptz NOT NULL DEFAULT now()
);

-- Which database is this? A random id made at migration, read with current_database() (a database cloned
-- from a template keeps the id but not the name): transactional enqueue on a caller's connection checks that
-- the connection is on the database the shard map places the job's shard on.
CREATE TABLE finejobs_database (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id        uuid    NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO finejobs_database DEFAULT VALUES;
