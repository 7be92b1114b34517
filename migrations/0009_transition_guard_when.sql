-- 0009_transition_guard_when: the database still refuses every illegal run/step transition, but
-- the legal pairs now sit in each trigger's WHEN clause (evaluated by the executor, no plpgsql call
-- and no table lookup per updated row: the checkpoint hot path updates three step rows per step).
-- `rebuild_transition_triggers()` regenerates both triggers from `state_transitions`; a migration
-- that changes that table must call it (this one does, after 0008's waiting -> ready).

CREATE OR REPLACE FUNCTION refuse_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'illegal % transition % -> %', TG_ARGV[0], OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END $$;

CREATE OR REPLACE FUNCTION rebuild_transition_triggers() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    spec record;
    legal text[];
BEGIN
    FOR spec IN SELECT * FROM (VALUES ('run', 'runs'), ('step', 'steps')) AS t(entity, tbl) LOOP
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
