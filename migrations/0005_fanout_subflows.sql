-- 0005_fanout_subflows: map items (steps with item_index > 0) and child runs of subflow steps.

ALTER TABLE runs ADD COLUMN parent_step_id bigint;
CREATE INDEX runs_parent_step ON runs(parent_step_id) WHERE parent_step_id IS NOT NULL;
-- Small partial indexes keep per-commit fan-out bookkeeping O(live items), not O(all items).
CREATE INDEX steps_pending_items ON steps(run_id, node_id, item_index)
    WHERE status = 'pending' AND item_index > 0;
CREATE INDEX steps_live_items ON steps(run_id, node_id)
    WHERE status IN ('ready', 'running', 'retrying', 'waiting') AND item_index > 0;
CREATE INDEX steps_waiting_children ON steps(run_id) WHERE status = 'waiting' AND node_type = 'subflow';
