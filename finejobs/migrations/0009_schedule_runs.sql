-- finejobs 0009: a schedule's run history without walking the job table.
--
-- The run history of a schedule (the console's schedule page, `finejobs schedules show`, the REST API) is
-- its newest jobs by tick: WHERE schedule_id = $1 ORDER BY fire_at DESC, id DESC LIMIT n. The index of 0004
-- on (shard, schedule_id, fire_at) cannot serve that without a shard, so the statement read every job of the
-- table (0.5 to 1 s on 2M finished jobs). This index seeks the schedule and reads its newest ticks first: a
-- few rows, whatever the table's size. Only jobs made by schedules are in it.
--
-- As in 0006, the default partition's copy first, under a name of our choosing; the index on the partitioned
-- table then adopts it, and PostgreSQL makes one for each shard partition.

CREATE INDEX finejobs_jobs_other_schedule_runs_idx ON finejobs_jobs_other (schedule_id, fire_at DESC, id DESC)
    WHERE schedule_id IS NOT NULL;
CREATE INDEX finejobs_jobs_schedule_runs_idx ON finejobs_jobs (schedule_id, fire_at DESC, id DESC)
    WHERE schedule_id IS NOT NULL;
