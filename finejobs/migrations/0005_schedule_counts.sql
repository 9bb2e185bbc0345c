-- finejobs 0005: schedules keep their count.
-- A rule's COUNT (Every(count=6), RRULE COUNT) used to be counted in occurrences from the rule's start,
-- so ticks that passed while a schedule was paused, or that were skipped, used up the count. From now on
-- the schedule counts the ticks that made a run, in the compare-and-set that moves it on, and stops when
-- that number reaches the COUNT (run-now runs are not ticks and do not count).
--
-- Existing rows: the runs they made so far are the best count there is (it also holds the run-now runs of
-- a schedule, which at worst ends it that many runs early). A finished schedule stays finished: its
-- next_fire_at is NULL and the scheduler never looks at it again.

ALTER TABLE finejobs_schedules ADD COLUMN fired bigint NOT NULL DEFAULT 0 CHECK (fired >= 0);
UPDATE finejobs_schedules SET fired = runs WHERE runs > 0;
