-- finejobs 0011: step pipelines (finejobs.pipelines): runs, their steps' progress, and their work chunks.
--
-- finejobs_pipelines: one row per run. ``steps`` is a snapshot of the declaration taken at start (each step's
-- name, job kind, gated, on_failure, max_attempts, priority; a reduction is the last entry, with
-- "reduce": true), so that advancing a run needs no Python definitions. Every change to a run's steps and
-- chunks happens under this row's lock (SELECT ... FOR UPDATE), in one short transaction; ``reduce_job`` is
-- set once, under that lock, when the reduction job is enqueued (its unique key,
-- finejobs:pipeline:<id>:reduce, is a second guard). The result is written, and the run marked succeeded,
-- only while it is still running: once.
--
-- finejobs_pipeline_steps: the counters of each step (the reduction included), updated in the transaction
-- that changes a chunk. A step is complete when it is closed (the step before it complete; step 0 is closed
-- at start) and every chunk counted in its total is done, failed or skipped.
--
-- finejobs_chunks: the work items, a JSON array per chunk, with the step that processes it. A job carries
-- only the chunk id. ``pending``: emitted by a running attempt (producer_job, producer_claims), not yet
-- committed to the run; ``ready``: waiting behind a gate (or input of the reduction); ``queued``: its job is
-- enqueued (job_id); then ``done``, ``failed`` or ``skipped``.

CREATE TABLE finejobs_pipelines (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    params      jsonb       NOT NULL,
    shard       text        NOT NULL DEFAULT 'default',
    state       text        NOT NULL DEFAULT 'running'
                            CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    steps       jsonb       NOT NULL,
    reduce_job  bigint,
    result      jsonb,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT finejobs_pipelines_finished CHECK ((state = 'running') = (finished_at IS NULL))
);
-- Lists by name and by state, newest first (keyset on id); the reconcile pass seeks the running runs.
CREATE INDEX finejobs_pipelines_name_idx ON finejobs_pipelines (name, id DESC);
CREATE INDEX finejobs_pipelines_state_idx ON finejobs_pipelines (state, id DESC);

CREATE TABLE finejobs_pipeline_steps (
    pipeline_id    bigint      NOT NULL REFERENCES finejobs_pipelines (id) ON DELETE CASCADE,
    step           integer     NOT NULL CHECK (step >= 0),
    name           text        NOT NULL,
    kind           text        NOT NULL,
    gated          boolean     NOT NULL,
    reduce         boolean     NOT NULL DEFAULT false,
    closed         boolean     NOT NULL DEFAULT false,
    chunks_total   bigint      NOT NULL DEFAULT 0,
    chunks_done    bigint      NOT NULL DEFAULT 0,
    chunks_failed  bigint      NOT NULL DEFAULT 0,
    chunks_skipped bigint      NOT NULL DEFAULT 0,
    items_total    bigint      NOT NULL DEFAULT 0,
    items_done     bigint      NOT NULL DEFAULT 0,
    items_failed   bigint      NOT NULL DEFAULT 0,
    items_skipped  bigint      NOT NULL DEFAULT 0,
    started_at     timestamptz,
    finished_at    timestamptz,
    PRIMARY KEY (pipeline_id, step)
);

CREATE TABLE finejobs_chunks (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline_id     bigint      NOT NULL REFERENCES finejobs_pipelines (id) ON DELETE CASCADE,
    step            integer     NOT NULL CHECK (step >= 0),
    items           jsonb       NOT NULL CHECK (jsonb_typeof(items) = 'array'),
    n_items         integer     NOT NULL CHECK (n_items >= 0),
    state           text        NOT NULL
                                CHECK (state IN ('pending', 'ready', 'queued', 'done', 'failed', 'skipped')),
    producer_job    bigint,
    producer_claims integer,
    job_id          bigint,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- A step's chunks by state in id order: queueing behind a gate, the reduction's keyset pages, cancel.
CREATE INDEX finejobs_chunks_step_idx ON finejobs_chunks (pipeline_id, step, state, id);
-- An attempt's emitted chunks, until they are committed to the run (or dropped).
CREATE INDEX finejobs_chunks_producer_idx ON finejobs_chunks (producer_job, producer_claims) WHERE state = 'pending';
-- The reconcile pass: queued chunks, whose job may have ended without the chunk (attempts exhausted, ...).
CREATE INDEX finejobs_chunks_queued_idx ON finejobs_chunks (pipeline_id, id) WHERE state = 'queued';
