-- finejobs 0008: what a handler returned, as JSON (a Django task's return_value; any handler's).
--
-- return_value: the handler's return value when it succeeded and returned something other than None or
-- finejobs.Idle that jsonb can keep (finejobs.payloads' rules, at most 1 MB); NULL otherwise. Only a
-- succeeded job has one: the completer writes it with the success, in the same statement, and only for the
-- outcomes that carry one (a batch without any runs the statement it ran before this migration).
--
-- A nullable column without a default: adding it rewrites nothing, on any table size.

ALTER TABLE finejobs_jobs ADD COLUMN return_value jsonb;
