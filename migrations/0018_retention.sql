-- 0018: retention (`flowstudio prune`). Pinned runs are never pruned; the partial index finds prunable
-- runs oldest first; the two indexes let a run's DELETE cascade/set-null without scanning `signals`
-- (the existing index covers unconsumed signals only) and `schedule_fires`.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS pinned boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS runs_prunable ON runs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled') AND NOT pinned;
CREATE INDEX IF NOT EXISTS signals_run ON signals (run_id);
CREATE INDEX IF NOT EXISTS schedule_fires_run ON schedule_fires (run_id) WHERE run_id IS NOT NULL;
