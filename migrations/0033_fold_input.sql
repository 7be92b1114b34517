-- 0033_fold_input: a batch run whose first step is a pass-through `input` starts past it.
--
-- An `input` node without params outputs the run's inputs: nothing to execute. The batch
-- dispatcher (`engine/batches.py`) made it ready and published it; a worker then claimed it (the
-- run starts), executed it and committed its success (its successors ready, published or claimed):
-- for each item, a claim and a commit, each a transaction with its own WAL flush, and a worker
-- cycle, before its first real step could start. `start_runs_folded(runs, root, ready, channel)`
-- writes, for each run (unstarted, locked by the caller) whose `root` step is still pending, what
-- that dispatch, claim and commit write together, in one call: the root step pending -> ready ->
-- running -> succeeded (three updates, each a legal pair: no new transition), attempt 1, lease
-- cleared as a success clears it, its payload (input = output = the run's inputs); the run queued
-- -> running (started_at); the successors `ready` (the planner's `chain_successors` of the root)
-- pending -> ready; the events in the order the three transactions log them (root ready, root
-- running, run running, root succeeded, then each successor ready in step id order); outbox rows
-- for the successors in pick order, and one NOTIFY per run. `tests/engine/test_fold_input.py`
-- compares every row with the three-transaction path. Returns the runs it started and the outbox
-- rows; a run whose root was not pending is left alone (the caller starts it the general way).

CREATE FUNCTION start_runs_folded(p_runs uuid[], p_root text, p_ready text[], p_channel text)
RETURNS TABLE (started uuid[], ob_ids bigint[], ob_runs uuid[], ob_steps bigint[],
               ob_tokens integer[])
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_runs uuid[];
    v_notified bigint;
BEGIN
    WITH rd AS (
        UPDATE steps s SET status = 'ready', ready_at = clock_timestamp(), dispatched_at = now()
          FROM unnest(p_runs) AS p(id)
         WHERE s.run_id = p.id AND s.status = 'pending' AND s.item_index = 0
           AND s.node_id = p_root
        RETURNING s.id, s.run_id
    )
    SELECT array_agg(id ORDER BY id), array_agg(run_id ORDER BY id) INTO v_ids, v_runs FROM rd;
    IF v_ids IS NULL THEN
        started := '{}';
        ob_ids := '{}';
        ob_runs := '{}';
        ob_steps := '{}';
        ob_tokens := '{}';
        RETURN NEXT;
        RETURN;
    END IF;
    UPDATE steps s SET status = 'running', attempt = s.attempt + 1,
                       started_at = coalesce(s.started_at, clock_timestamp()), due_at = NULL
     WHERE s.id = ANY(v_ids) AND s.status = 'ready';
    UPDATE steps s SET status = 'succeeded', branch = NULL, finished_at = clock_timestamp(),
                       error = NULL, lease_owner = NULL, lease_expires_at = NULL
     WHERE s.id = ANY(v_ids) AND s.status = 'running';
    INSERT INTO step_io (step_id, input, output)
    SELECT s.id, r.inputs, r.inputs FROM steps s JOIN runs r ON r.id = s.run_id
     WHERE s.id = ANY(v_ids)
        ON CONFLICT (step_id) DO UPDATE SET input = EXCLUDED.input, output = EXCLUDED.output;
    WITH sr AS (
        UPDATE steps s SET status = 'ready', ready_at = clock_timestamp(), dispatched_at = now()
         WHERE s.run_id = ANY(v_runs) AND s.status = 'pending' AND s.item_index = 0
           AND s.node_id = ANY(p_ready)
        RETURNING s.id, s.run_id, s.node_id, s.attempt
    ), numbered AS (
        SELECT sr.*, row_number() OVER (PARTITION BY sr.run_id ORDER BY sr.id)::int AS k,
               count(*) OVER (PARTITION BY sr.run_id)::int AS n
          FROM sr
    ), root AS (
        SELECT s.id, s.run_id, s.node_id, s.attempt, r.event_seq,
               coalesce((SELECT max(n) FROM numbered WHERE numbered.run_id = s.run_id), 0) AS n
          FROM steps s JOIN runs r ON r.id = s.run_id
         WHERE s.id = ANY(v_ids)
    ), ev AS (
        INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index, attempt,
                                from_status, to_status, data)
        SELECT run_id, event_seq + 1, 'step', id, node_id, 0, 0, 'pending', 'ready', NULL::jsonb
          FROM root
        UNION ALL
        SELECT run_id, event_seq + 2, 'step', id, node_id, 0, attempt, 'ready', 'running', NULL
          FROM root
        UNION ALL
        SELECT run_id, event_seq + 3, 'run', NULL::bigint, NULL, NULL::integer, NULL::integer,
               'queued', 'running', NULL
          FROM root
        UNION ALL
        SELECT run_id, event_seq + 4, 'step', id, node_id, 0, attempt, 'running', 'succeeded',
               NULL
          FROM root
        UNION ALL
        SELECT nb.run_id, root.event_seq + 4 + nb.k, 'step', nb.id, nb.node_id, 0, nb.attempt,
               'pending', 'ready', NULL::jsonb
          FROM numbered nb JOIN root ON root.run_id = nb.run_id
    ), ru AS (
        UPDATE runs r SET status = 'running',
                          started_at = coalesce(r.started_at, clock_timestamp()),
                          event_seq = root.event_seq + 4 + root.n, updated_at = now()
          FROM root WHERE r.id = root.run_id
        RETURNING r.id, r.event_seq
    ), ob AS (
        INSERT INTO outbox (run_id, step_id, token)
        SELECT nb.run_id, nb.id, nb.attempt
          FROM numbered nb JOIN unnest(p_runs) WITH ORDINALITY AS p(id, ord) ON p.id = nb.run_id
         ORDER BY p.ord, nb.id
        RETURNING id, run_id, step_id, token
    ), nt AS (
        SELECT pg_notify(p_channel, ru.id::text || ':' || ru.event_seq) FROM ru
    )
    SELECT (SELECT count(*) FROM nt), ARRAY(SELECT ru.id FROM ru),
           ARRAY(SELECT ob.id FROM ob ORDER BY ob.id),
           ARRAY(SELECT ob.run_id FROM ob ORDER BY ob.id),
           ARRAY(SELECT ob.step_id FROM ob ORDER BY ob.id),
           ARRAY(SELECT ob.token FROM ob ORDER BY ob.id)
      INTO v_notified, started, ob_ids, ob_runs, ob_steps, ob_tokens;
    RETURN NEXT;
END
$$;
