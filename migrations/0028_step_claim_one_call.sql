-- 0028_step_claim_one_call: a worker's claim of a published step in ONE server-side call.
--
-- A claim (`engine/checkpoint.claim_step`: a step whose message came through the queue, e.g. the
-- first step of every run, the other successors of a fan-out, a retry) sent two messages: BEGIN +
-- the run lock + the fenced claim, then the flush (the events, the run row, the NOTIFY) + COMMIT,
-- each a round trip and a pass of the worker's event loop, five statements in all: on
-- `flowstudio bench --llm` the claim was ~18% of a worker's CPU. `step_claim` does the same
-- transaction, statement after statement, under the same run lock:
--   1. lock the run row (FOR UPDATE); a finished run claims nothing ('lost', nothing written);
--   2. the fenced move ready -> running (id + the message's token = the step's attempt), the
--      attempt incremented (the new fencing token), under a lease of `p_lease` seconds to
--      `p_owner`: `engine/txnsql.CLAIM_SET` ('lost' if it matched nothing: a stale or duplicate
--      message);
--   3. its event row, then the run's own move if any (queued -> running with started_at, the
--      run's first claim; waiting -> running), as `claim_step` logs them; the run's counter and
--      the NOTIFY of `engine/runtxn.py` (`{run}:{last seq}`);
--   4. it answers the claimed step and the run fields the worker needs (`checkpoint.ClaimedStep`).
-- The rows are those of the two-message path (tests/engine/test_one_call_claim.py). The statuses
-- move through `state_transitions` like any other move (the triggers still check them).

CREATE FUNCTION step_claim(
    p_run uuid, p_step bigint, p_token integer, p_owner text, p_lease float8, p_channel text,
    OUT outcome text, OUT c_node_id text, OUT c_item_index integer, OUT c_node_type text,
    OUT c_attempt integer, OUT c_max_attempts integer, OUT c_flow_id uuid,
    OUT c_flow_version integer, OUT c_inputs jsonb, OUT c_owner_id uuid, OUT c_tweaks jsonb,
    OUT c_in_batch boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_seq integer;
BEGIN
    SELECT r.status, r.event_seq, r.flow_id, r.flow_version, r.inputs, r.owner_id, r.tweaks,
           r.batch_id IS NOT NULL
      INTO v_status, v_seq, c_flow_id, c_flow_version, c_inputs, c_owner_id, c_tweaks,
           c_in_batch
      FROM runs r WHERE r.id = p_run FOR UPDATE;
    IF NOT FOUND OR v_status IN ('succeeded', 'failed', 'cancelled') THEN
        outcome := 'lost';
        RETURN;
    END IF;
    UPDATE steps s
       SET status = 'running', attempt = s.attempt + 1, lease_owner = p_owner,
           lease_expires_at = now() + make_interval(secs => p_lease),
           started_at = coalesce(s.started_at, clock_timestamp()), due_at = NULL
     WHERE s.id = p_step AND s.run_id = p_run AND s.attempt = p_token AND s.status = 'ready'
    RETURNING s.node_id, s.item_index, s.node_type, s.attempt, s.max_attempts
      INTO c_node_id, c_item_index, c_node_type, c_attempt, c_max_attempts;
    IF NOT FOUND THEN
        outcome := 'lost';
        RETURN;
    END IF;
    INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index, attempt,
                            from_status, to_status, data)
    VALUES (p_run, v_seq + 1, 'step', p_step, c_node_id, c_item_index, c_attempt, 'ready',
            'running', NULL);
    IF v_status IN ('queued', 'waiting') THEN  -- the run's first claim (start) or its wake
        INSERT INTO run_events (run_id, seq, kind, from_status, to_status, data)
        VALUES (p_run, v_seq + 2, 'run', v_status, 'running', NULL);
        UPDATE runs r SET event_seq = v_seq + 2, updated_at = now(), status = 'running',
                          started_at = CASE WHEN v_status = 'queued'
                                            THEN coalesce(r.started_at, clock_timestamp())
                                            ELSE r.started_at END
         WHERE r.id = p_run;
        v_seq := v_seq + 2;
    ELSE
        UPDATE runs r SET event_seq = v_seq + 1, updated_at = now() WHERE r.id = p_run;
        v_seq := v_seq + 1;
    END IF;
    PERFORM pg_notify(p_channel, p_run::text || ':' || v_seq);
    outcome := 'claimed';
END
$$;
