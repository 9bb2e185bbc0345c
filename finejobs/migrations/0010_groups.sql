-- finejobs 0010: groups of jobs (queue.group(name)): progress counters and completion callbacks.
--
-- A member's outcome updates its group's counters in the transaction that writes the outcome (the batched
-- completer's included), under the group row's lock: whichever transaction brings the finished count up to
-- the total of a sealed group marks it finished (finished_at, once: the update is guarded by
-- finished_at IS NULL) and inserts its callback jobs in that same transaction, each with the unique key
-- finejobs:group:<id>:<event>. So callbacks are enqueued exactly once, with no coordinator to race.
--
-- Counters count outcomes, not rows: pruning finished members changes nothing; a member retried after it
-- finished moves its count back out of its final state; deleting an unfinished member takes it out of the
-- total. callbacks: {"complete"|"success"|"failure": {"kind", "shard", "payload", "priority",
-- "max_attempts", "expires_in"}}, validated by finejobs when the group was made.

CREATE TABLE finejobs_groups (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200),
    total         bigint      NOT NULL DEFAULT 0,
    succeeded     bigint      NOT NULL DEFAULT 0,
    failed        bigint      NOT NULL DEFAULT 0,
    expired       bigint      NOT NULL DEFAULT 0,
    cancelled     bigint      NOT NULL DEFAULT 0,
    sealed        boolean     NOT NULL DEFAULT false,
    callbacks     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    outcome       text        CHECK (outcome IN ('succeeded', 'failed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    sealed_at     timestamptz,
    cancelled_at  timestamptz,
    first_done_at timestamptz,
    last_done_at  timestamptz,
    finished_at   timestamptz,
    CONSTRAINT finejobs_groups_outcome_when_finished CHECK ((outcome IS NULL) = (finished_at IS NULL))
);
CREATE INDEX finejobs_groups_created_idx ON finejobs_groups (created_at DESC, id DESC);

-- Nullable, no default: adding it rewrites nothing, on any table size.
ALTER TABLE finejobs_jobs ADD COLUMN group_id bigint;
-- A group's members by state, newest first within each: its waiting members (cancel), its running ones
-- (progress), its newest failures (a backward scan per state: fast however many members failed).
CREATE INDEX finejobs_jobs_group_idx ON finejobs_jobs (group_id, state, id) WHERE group_id IS NOT NULL;
