-- 0030_guarded_transitions: a legal state pair can be legal inside one operation only.
--
-- 0027 made step pending -> running legal for `step_commit_success`'s eager claim (a successor
-- made ready and claimed in the same UPDATE), and with it for any statement: a mistake in another
-- path of the engine could start a step that was never ready, and the trigger would let it. Now
-- `state_transitions.only_in` names the operation a pair belongs to (NULL: any statement), and
-- `rebuild_transition_triggers()` (0021's, again, with that clause) lets such a pair through only
-- while the transaction-local setting `flowstudio.<only_in>` is 'on'. `step_commit_success`
-- (0027's, again, whole: migrations are history) sets `flowstudio.eager_claim` on just around its
-- claiming UPDATE and off after it. This guards the engine against its own mistakes, not against
-- a database user (who may set the setting or drop the trigger). A setting never set in the
-- session reads NULL, hence IS NOT DISTINCT FROM: a NULL in the WHEN clause would skip the check.
-- The legal pairs themselves do not change (tests/unit/test_states.py);
-- tests/integration/test_transition_guard.py tries the guarded pair with the setting off and on.

ALTER TABLE state_transitions ADD COLUMN only_in text;
UPDATE state_transitions SET only_in = 'eager_claim'
 WHERE entity = 'step' AND from_status = 'pending' AND to_status = 'running';

CREATE OR REPLACE FUNCTION rebuild_transition_triggers() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    spec record;
    legal text[];
    guarded text;
BEGIN
    FOR spec IN SELECT * FROM (VALUES ('run', 'runs'), ('step', 'steps'), ('batch', 'batches'))
            AS t(entity, tbl) LOOP
        SELECT array_agg(from_status || '>' || to_status ORDER BY from_status, to_status)
          INTO legal FROM state_transitions WHERE entity = spec.entity AND only_in IS NULL;
        SELECT string_agg(format(
                   '(OLD.status = %L AND NEW.status = %L '
                   'AND current_setting(%L, true) IS NOT DISTINCT FROM ''on'')',
                   from_status, to_status, 'flowstudio.' || only_in), ' OR '
                   ORDER BY from_status, to_status)
          INTO guarded FROM state_transitions WHERE entity = spec.entity AND only_in IS NOT NULL;
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', spec.tbl || '_transition', spec.tbl);
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE OF status ON %I FOR EACH ROW '
            'WHEN (OLD.status IS DISTINCT FROM NEW.status '
            'AND (OLD.status || ''>'' || NEW.status) <> ALL (%L::text[])%s) '
            'EXECUTE FUNCTION refuse_transition(%L)',
            spec.tbl || '_transition', spec.tbl, coalesce(legal, '{}'),
            CASE WHEN guarded IS NULL THEN '' ELSE ' AND NOT (' || guarded || ')' END,
            spec.entity);
    END LOOP;
END $$;

SELECT rebuild_transition_triggers();

CREATE OR REPLACE FUNCTION step_commit_success(
    p_run uuid, p_step bigint, p_attempt integer, p_owner text, p_branch text,
    p_input jsonb, p_output jsonb, p_data jsonb,
    p_ready text[], p_claim text, p_lease float8, p_ctx text[], p_channel text,
    p_outputs text[],
    OUT outcome text, OUT ob_ids bigint[], OUT ob_steps bigint[], OUT ob_tokens integer[],
    OUT cl_id bigint, OUT cl_type text, OUT cl_attempt integer, OUT cl_max_attempts integer,
    OUT cl_ctx jsonb
) LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_seq integer;
    v_node text;
    v_ids bigint[];
    v_nodes text[];
    v_attempts integer[];  -- each ready step's attempt as it was made ready
    v_n integer;
    v_outputs jsonb;
BEGIN
    IF coalesce(cardinality(p_ready), 0) = 0 AND p_outputs IS NULL THEN
        RAISE EXCEPTION 'step %: a success that readies no successor and does not end its run',
            p_step USING ERRCODE = 'FS001';
    END IF;
    SELECT status, event_seq INTO v_status, v_seq FROM runs WHERE id = p_run FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'no_run';
        RETURN;
    END IF;
    IF v_status <> 'running' THEN
        outcome := 'general';
        RETURN;
    END IF;
    IF p_outputs IS NOT NULL AND EXISTS (  -- the run's last step: is every other one done?
            SELECT 1 FROM steps WHERE run_id = p_run AND item_index = 0 AND id <> p_step
               AND status NOT IN ('succeeded', 'skipped')) THEN
        outcome := 'general';
        RETURN;
    END IF;
    UPDATE steps SET status = 'succeeded', branch = p_branch, finished_at = clock_timestamp(),
                     error = NULL, lease_owner = NULL, lease_expires_at = NULL
     WHERE id = p_step AND run_id = p_run AND attempt = p_attempt AND lease_owner = p_owner
       AND status = 'running' AND item_index = 0
    RETURNING node_id INTO v_node;
    IF NOT FOUND THEN
        outcome := 'lost';
        RETURN;
    END IF;
    INSERT INTO step_io (step_id, input, output) VALUES (p_step, p_input, p_output)
        ON CONFLICT (step_id) DO UPDATE SET input = EXCLUDED.input, output = EXCLUDED.output;
    IF p_outputs IS NOT NULL THEN  -- the run ends: its outputs, as advance.collect_outputs
        SELECT CASE WHEN cardinality(p_outputs) = 0 THEN NULL
                    WHEN cardinality(p_outputs) = 1
                    THEN nullif(max(io.output::text) FILTER (WHERE s.node_id = p_outputs[1]),
                                'null')::jsonb
                    ELSE coalesce(jsonb_object_agg(s.node_id, io.output)
                                  FILTER (WHERE s.node_id IS NOT NULL), '{}') END
          INTO v_outputs
          FROM steps s JOIN step_io io ON io.step_id = s.id
         WHERE s.run_id = p_run AND s.node_id = ANY(p_outputs) AND s.status = 'succeeded';
        INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index, attempt,
                                from_status, to_status, data)
        VALUES (p_run, v_seq + 1, 'step', p_step, v_node, 0, p_attempt, 'running', 'succeeded',
                p_data),
               (p_run, v_seq + 2, 'run', NULL, NULL, NULL, NULL, 'running', 'succeeded', NULL);
        UPDATE runs SET status = 'succeeded', outputs = v_outputs, event_seq = v_seq + 2,
                        finished_at = coalesce(finished_at, clock_timestamp()), updated_at = now()
         WHERE id = p_run;
        PERFORM pg_notify(p_channel, p_run::text || ':' || (v_seq + 2) || ':succeeded');
        ob_ids := '{}';
        ob_steps := '{}';
        ob_tokens := '{}';
        outcome := 'committed';
        RETURN;
    END IF;
    -- the successors pending -> ready; the claimed one pending -> running in the same update
    -- (made ready and claimed at once: its two moves are logged below, as two statements would);
    -- pending -> running is legal only while flowstudio.eager_claim is on (0030): this UPDATE only
    PERFORM set_config('flowstudio.eager_claim', 'on', true);
    WITH rd AS (
        UPDATE steps s
           SET status = CASE WHEN s.node_id = p_claim THEN 'running' ELSE 'ready' END,
               ready_at = clock_timestamp(), dispatched_at = now(),
               attempt = s.attempt + CASE WHEN s.node_id = p_claim THEN 1 ELSE 0 END,
               lease_owner = CASE WHEN s.node_id = p_claim THEN p_owner END,
               lease_expires_at = CASE WHEN s.node_id = p_claim
                                       THEN now() + make_interval(secs => p_lease) END,
               started_at = CASE WHEN s.node_id = p_claim
                                 THEN coalesce(s.started_at, clock_timestamp())
                                 ELSE s.started_at END,
               due_at = CASE WHEN s.node_id = p_claim THEN NULL ELSE s.due_at END
         WHERE s.run_id = p_run AND s.status = 'pending' AND s.item_index = 0
           AND s.node_id = ANY(p_ready)
        RETURNING s.id, s.node_id, s.status, s.attempt, s.node_type, s.max_attempts
    )
    SELECT array_agg(id ORDER BY id), array_agg(node_id ORDER BY id),
           array_agg(attempt - CASE WHEN status = 'running' THEN 1 ELSE 0 END ORDER BY id),
           max(id) FILTER (WHERE status = 'running'),
           max(node_type) FILTER (WHERE status = 'running'),
           max(attempt) FILTER (WHERE status = 'running'),
           max(max_attempts) FILTER (WHERE status = 'running')
      INTO v_ids, v_nodes, v_attempts, cl_id, cl_type, cl_attempt, cl_max_attempts FROM rd;
    PERFORM set_config('flowstudio.eager_claim', 'off', true);
    IF coalesce(cardinality(v_ids), 0) <> cardinality(p_ready)
            OR (p_claim IS NOT NULL AND cl_id IS NULL) THEN
        RAISE EXCEPTION 'step %: % of its successors % were pending', p_step,
            coalesce(cardinality(v_ids), 0), p_ready USING ERRCODE = 'FS001';
    END IF;
    IF p_claim IS NOT NULL THEN  -- the claimed step's context, read after this success
        SELECT coalesce(jsonb_agg(to_jsonb(cx)), '[]') INTO cl_ctx
          FROM (SELECT s.node_id, s.status, s.branch, io.output
                  FROM steps s LEFT JOIN step_io io ON io.step_id = s.id
                 WHERE s.run_id = p_run AND s.item_index = 0 AND s.node_id = ANY(p_ctx)) cx;
    END IF;
    ob_ids := '{}';
    ob_steps := '{}';
    ob_tokens := '{}';
    IF cardinality(v_ids) > (p_claim IS NOT NULL)::integer THEN  -- ready steps left to publish
        WITH ob AS (
            INSERT INTO outbox (run_id, step_id, token)
            SELECT p_run, u.id, u.attempt
              FROM unnest(v_ids, v_nodes, v_attempts) AS u(id, node, attempt)
             WHERE u.node IS DISTINCT FROM p_claim
             ORDER BY u.id
            RETURNING id, step_id, token
        )
        SELECT array_agg(id ORDER BY id), array_agg(step_id ORDER BY id),
               array_agg(token ORDER BY id)
          INTO ob_ids, ob_steps, ob_tokens FROM ob;
    END IF;
    v_n := 1 + cardinality(v_ids) + (p_claim IS NOT NULL)::integer;
    INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index, attempt,
                            from_status, to_status, data)
    SELECT p_run, v_seq + 1, 'step', p_step, v_node, 0, p_attempt, 'running', 'succeeded', p_data
    UNION ALL
    SELECT p_run, v_seq + 1 + u.ord::integer, 'step', u.id, u.node, 0, u.attempt, 'pending',
           'ready', NULL
      FROM unnest(v_ids, v_nodes, v_attempts) WITH ORDINALITY AS u(id, node, attempt, ord)
    UNION ALL
    SELECT p_run, v_seq + v_n, 'step', cl_id, p_claim, 0, cl_attempt, 'ready', 'running', NULL
     WHERE p_claim IS NOT NULL;
    UPDATE runs SET event_seq = v_seq + v_n, updated_at = now() WHERE id = p_run;
    PERFORM pg_notify(p_channel, p_run::text || ':' || (v_seq + v_n));
    outcome := 'committed';
END
$$;
