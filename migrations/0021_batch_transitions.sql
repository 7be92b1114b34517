-- 0021_batch_transitions: the batch lifecycle is a state machine like runs and steps. Mirrors
-- BATCH_TRANSITIONS in engine/states.py (tests/unit/test_states.py keeps them equal): loading ->
-- running (loaded) -> succeeded (finish); loading -> failed (the loader died or failed); loading |
-- running -> cancelled. `rebuild_transition_triggers()` (0009) now builds the batches trigger too, so
-- the database refuses any other batch status change (e.g. out of `cancelled`) whoever tries it.

ALTER TABLE state_transitions DROP CONSTRAINT IF EXISTS state_transitions_entity_check;
ALTER TABLE state_transitions ADD CONSTRAINT state_transitions_entity_check
    CHECK (entity IN ('run', 'step', 'batch'));

INSERT INTO state_transitions (entity, from_status, to_status) VALUES
    ('batch', 'loading', 'running'), ('batch', 'running', 'succeeded'),
    ('batch', 'loading', 'failed'), ('batch', 'loading', 'cancelled'),
    ('batch', 'running', 'cancelled')
ON CONFLICT DO NOTHING;

-- 0009's function again with ('batch', 'batches') added (migrations are history: a copy by design).
CREATE OR REPLACE FUNCTION rebuild_transition_triggers() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    spec record;
    legal text[];
BEGIN
    FOR spec IN SELECT * FROM (VALUES ('run', 'runs'), ('step', 'steps'), ('batch', 'batches'))
            AS t(entity, tbl) LOOP
        SELECT array_agg(from_status || '>' || to_status ORDER BY from_status, to_status)
          INTO legal FROM state_transitions WHERE entity = spec.entity;
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', spec.tbl || '_transition', spec.tbl);
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE OF status ON %I FOR EACH ROW '
            'WHEN (OLD.status IS DISTINCT FROM NEW.status '
            'AND (OLD.status || ''>'' || NEW.status) <> ALL (%L::text[])) '
            'EXECUTE FUNCTION refuse_transition(%L)',
            spec.tbl || '_transition', spec.tbl, legal, spec.entity);
    END LOOP;
END $$;

SELECT rebuild_transition_triggers();
