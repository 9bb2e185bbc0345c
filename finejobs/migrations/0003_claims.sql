-- finejobs 0003: the claim count, the fencing token of completions.
-- `attempt` is given back by a Snooze or a release, so (attempt, lease owner) could match a later claim of
-- the same job by the same worker; `claims` only ever goes up.

ALTER TABLE finejobs_jobs ADD COLUMN claims integer NOT NULL DEFAULT 0;
