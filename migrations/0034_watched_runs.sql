-- 0034_watched_runs: a commit NOTIFYs only the runs someone follows live.
--
-- PostgreSQL serializes every committing transaction that sent a NOTIFY, database-wide: it takes
-- one lock before its commit record and holds it through the WAL flush (async.c,
-- PreCommit_Notify), so that notifications are queued in commit order. Every checkpoint commit
-- NOTIFYed `fs_run_events` for the API's live followers (SSE streams, sync runs), whether or not
-- anyone followed the run: the engine's commits could not share a WAL flush, and queued for that
-- lock. Measured on a 2-core machine, 16 connections each committing one insert: 2,131-2,404 tx/s
-- without a NOTIFY, 291-1,121 tx/s with one.
--
-- `runs.watched_until`: the API sets it (`store.runs.watch_run`) before a live follower reads the
-- run, and renews it while following (`api/events.py`). Every statement that logs run events and
-- NOTIFYs now NOTIFYs only while `watched_until >= now()`. No notification a follower needs is
-- lost: the watch is an UPDATE of the run's row, and each of those statements locks or updates
-- that row (`step_commit_success` reads it FOR UPDATE first; the others UPDATE it). A commit that
-- locked the row first makes the watch wait for it, and the follower reads after its watch, so it
-- reads that commit; a watch that committed first is seen by the commit's lock or update (the
-- latest version of the row, under READ COMMITTED). The follower still re-reads the run every
-- 10 s (keepalive).
--
-- step_commit_success is 0030's and start_runs_folded 0033's with that test (migrations are
-- history: copies by design); flush_sql (engine/txnsql.py) and the batch start (engine/bulk.py)
-- test it in their statements.

ALTER TABLE runs ADD COLUMN watched_until timestamptz;  -- NULL: nobody follows the run live

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
    v_watched boolean;  -- someone follows this run live (0034): NOTIFY its commits
BEGIN
    IF coalesce(cardinality(p_ready), 0) = 0 AND p_outputs IS NULL THEN
        RAISE EXCEPTION 'step %: a success that readies no successor and does not end its run',
            p_step USING ERRCODE = 'FS001';
    END IF;
    SELECT status, event_seq, watched_until >= now() INTO v_status, v_seq, v_watched
      FROM runs WHERE id = p_run FOR UPDATE;
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
        IF v_watched THEN
            PERFORM pg_notify(p_channel, p_run::text || ':' || (v_seq + 2) || ':succeeded');
        END IF;
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
    IF v_watched THEN
        PERFORM pg_notify(p_channel, p_run::text || ':' || (v_seq + v_n));
    END IF;
    outcome := 'committed';
END
$$;

CREATE OR REPLACE FUNCTION start_runs_folded(
    p_runs uuid[], p_root text, p_ready text[], p_channel text
)
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
        RETURNING r.id, r.event_seq, r.watched_until
    ), ob AS (
        INSERT INTO outbox (run_id, step_id, token)
        SELECT nb.run_id, nb.id, nb.attempt
          FROM numbered nb JOIN unnest(p_runs) WITH ORDINALITY AS p(id, ord) ON p.id = nb.run_id
         ORDER BY p.ord, nb.id
        RETURNING id, run_id, step_id, token
    ), nt AS (
        SELECT pg_notify(p_channel, ru.id::text || ':' || ru.event_seq) FROM ru
         WHERE ru.watched_until >= now()
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
