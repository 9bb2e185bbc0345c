-- finejobs 0002: recurring schedules.
-- A schedule is a row; each tick becomes one ordinary job. A scheduler (every worker runs one) moves
-- next_fire_at with a compare-and-set UPDATE in the transaction that inserts the tick's job, and the
-- unique (schedule_id, fire_at) on the job rows makes a second job for the same tick impossible.

CREATE TABLE finejobs_schedules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text        NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200),
    description    text        NOT NULL DEFAULT '',
    kind           text        NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 200),
    payload        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    shard          text        NOT NULL DEFAULT 'default' CHECK (shard ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    priority       smallint    NOT NULL DEFAULT 0,
    max_attempts   integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    rule           jsonb       NOT NULL,
    timezone       text        NOT NULL DEFAULT 'UTC',
    start_at       timestamptz,
    end_at         timestamptz,
    paused         boolean     NOT NULL DEFAULT false,
    misfire        text        NOT NULL DEFAULT 'coalesce' CHECK (misfire IN ('coalesce', 'all', 'skip')),
    misfire_limit  integer     NOT NULL DEFAULT 100 CHECK (misfire_limit >= 1),
    misfire_grace  interval    NOT NULL DEFAULT '60 seconds',
    overlap        text        NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'allow', 'wait')),
    expires_in     interval,
    next_fire_at   timestamptz,
    last_fire_at   timestamptz,
    last_job_id    bigint,
    runs           bigint      NOT NULL DEFAULT 0,
    skipped        bigint      NOT NULL DEFAULT 0,
    last_error     text,
    source         text        NOT NULL DEFAULT 'runtime' CHECK (source IN ('code', 'runtime')),
    version        bigint      NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The scheduler's question, every pass: which active schedules are due?
CREATE INDEX finejobs_schedules_due_idx ON finejobs_schedules (next_fire_at) WHERE NOT paused;

-- The job a tick made, and what its handler said (finejobs.Idle is recorded as 'idle', a timeout as 'timeout').
ALTER TABLE finejobs_jobs ADD COLUMN schedule_id bigint;
ALTER TABLE finejobs_jobs ADD COLUMN fire_at timestamptz;
ALTER TABLE finejobs_jobs ADD COLUMN result text;

-- Exactly one job per tick; also the index behind "the runs of this schedule, newest first".
CREATE UNIQUE INDEX finejobs_jobs_schedule_tick_idx ON finejobs_jobs (schedule_id, fire_at)
    WHERE schedule_id IS NOT NULL;
-- "Is a run of this schedule unfinished?" (the overlap policy) without walking its finished jobs.
CREATE INDEX finejobs_jobs_schedule_unfinished_idx ON finejobs_jobs (schedule_id)
    WHERE schedule_id IS NOT NULL AND state IN ('available', 'running');
