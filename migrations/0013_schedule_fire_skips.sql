-- 0013_schedule_fire_skips: a tick that found the schedule's owner without access to the flow is
-- recorded as skipped (no run) with the reason, instead of starting a run (engine/schedules.py).

ALTER TABLE schedule_fires ADD COLUMN IF NOT EXISTS skipped_reason text;
