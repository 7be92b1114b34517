-- 0008_agent_wake: a waiting step may become ready again (an agent whose tool calls all finished
-- runs its next LLM turn). Mirrors STEP_TRANSITIONS["wake"] in engine/states.py.

INSERT INTO state_transitions (entity, from_status, to_status) VALUES ('step', 'waiting', 'ready')
ON CONFLICT DO NOTHING;
