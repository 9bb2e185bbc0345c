-- finejobs 0006: what operators steer and see.
--
-- finejobs_pauses: the control table. A row pauses a kind (shard NULL), a shard (kind NULL) or a kind
-- within a shard. Workers read it on each claim round (from a cache refreshed about every second, and at
-- once on a NOTIFY) and their claims leave paused work alone; running jobs finish.
--
-- finejobs_workers: the worker registry, for people. Each worker upserts its row every few seconds and
-- deletes it on a clean stop; a row not seen for a while is shown as gone and later pruned. Nothing reads
-- it for correctness: rescue works from the leases on the job rows alone.
--
-- finejobs_audit: who did what to which jobs (operator actions from the console, the REST API, the CLI).
--
-- finejobs_jobs_finished_id_idx: the state index of the operations API (finejobs.store.operations). Pages
-- list jobs newest first (keyset on id) by state, counts and stats count the newest rows of each state:
-- (state, id, shard) seeks a state (and a shard in the default partition) in id order, and with kind and
-- run_at included, stats and counts are index-only scans. It holds every state but running, so a claim and
-- a heartbeat never write it; an enqueue, a retry and a completion write it once. (Its name, and that of the
-- default partition's copy, finejobs_jobs_other_state_id_idx, are among the names sharding.py reserves.)

CREATE TABLE finejobs_pauses (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      text CHECK (kind IS NULL OR char_length(kind) BETWEEN 1 AND 200),
    shard     text CHECK (shard IS NULL OR shard ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text,
    reason    text CHECK (reason IS NULL OR char_length(reason) <= 8192),
    CONSTRAINT finejobs_pauses_target CHECK (kind IS NOT NULL OR shard IS NOT NULL)
);
CREATE UNIQUE INDEX finejobs_pauses_target_idx ON finejobs_pauses (coalesce(kind, ''), coalesce(shard, ''));

CREATE TABLE finejobs_workers (
    id          text PRIMARY KEY,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    version     text        NOT NULL,
    database    text,
    shards      text[],                      -- NULL: every shard
    kinds       text[]      NOT NULL,
    concurrency integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL,
    in_flight   integer     NOT NULL DEFAULT 0,
    counters    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    info        jsonb       NOT NULL DEFAULT '{}'::jsonb   -- local schedules and the like
);
CREATE INDEX finejobs_workers_seen_idx ON finejobs_workers (seen_at);

CREATE TABLE finejobs_audit (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    target  jsonb       NOT NULL DEFAULT '{}'::jsonb,   -- a job id, a filter, a schedule, a kind or shard
    count   bigint,
    detail  text
);

-- The default partition's copy first, under a name of our choosing: the index on the partitioned table then
-- adopts it (and creates one for each shard partition, named by PostgreSQL).
CREATE INDEX finejobs_jobs_other_state_id_idx ON finejobs_jobs_other (state, id, shard) INCLUDE (kind, run_at)
    WHERE state <> 'running';
CREATE INDEX finejobs_jobs_finished_id_idx ON finejobs_jobs (state, id, shard) INCLUDE (kind, run_at)
    WHERE state <> 'running';
