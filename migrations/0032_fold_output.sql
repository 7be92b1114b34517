-- 0032_fold_output: a chain step's success may also commit the run's `output` step it claimed.
--
-- An `output` node without params only passes its input through: its step's input and output are
-- the output of the one step before it. With eager dispatch that step's success claims it for the
-- same worker (0027), which then executed it and committed it in a second call: a second round
-- trip, a second transaction and its WAL flush, and a worker's execute and commit cycle, for a
-- step that runs no code (a third of the steps of an `input -> llm_chat -> output` batch item).
-- A member of `step_commit_success_many` may now carry `fold` (the flow's output node ids):
-- after its own call claimed a step, that step's success is the very same function called again
-- in the same statement (input = output = the member's output; branch and data NULL; it ends the
-- run when every other step is done). The rows and events are those of the two calls made one
-- after the other (`tests/engine/test_fold_output.py`); the claim is then not handed back. When
-- that second call writes nothing (`general`: another step of the run is still live) the claim
-- is handed back as before and the worker executes the step. Members without `fold` (a worker of
-- an earlier release) are called exactly as before; a worker of this release on a database
-- without this migration sends `fold` to 0029's function, which ignores it.
-- The function is copied whole from 0029, with the fold added.

CREATE OR REPLACE FUNCTION step_commit_success_many(p_members jsonb)
RETURNS TABLE (
    idx integer, outcome text, ob_ids bigint[], ob_steps bigint[], ob_tokens integer[],
    cl_id bigint, cl_type text, cl_attempt integer, cl_max_attempts integer, cl_ctx jsonb
) LANGUAGE plpgsql AS $$
DECLARE
    m jsonb;
    i integer := 0;
    r record;
    f record;
BEGIN
    FOR m IN SELECT e.value FROM jsonb_array_elements(p_members) WITH ORDINALITY AS e(value, n)
             ORDER BY e.n LOOP
        SELECT * INTO r FROM step_commit_success(
            (m->>'run')::uuid, (m->>'step')::bigint, (m->>'attempt')::integer, m->>'owner',
            m->>'branch', m->'input', m->'output', nullif(m->'data', 'null'::jsonb),
            ARRAY(SELECT jsonb_array_elements_text(m->'ready')), m->>'claim',
            (m->>'lease')::float8, ARRAY(SELECT jsonb_array_elements_text(m->'ctx')),
            m->>'channel',
            CASE WHEN jsonb_typeof(m->'outputs') = 'array'
                 THEN ARRAY(SELECT jsonb_array_elements_text(m->'outputs')) END);
        idx := i;
        outcome := r.outcome;
        ob_ids := r.ob_ids;
        ob_steps := r.ob_steps;
        ob_tokens := r.ob_tokens;
        cl_id := r.cl_id;
        cl_type := r.cl_type;
        cl_attempt := r.cl_attempt;
        cl_max_attempts := r.cl_max_attempts;
        cl_ctx := r.cl_ctx;
        IF jsonb_typeof(m->'fold') = 'array' AND r.outcome = 'committed'
                AND r.cl_id IS NOT NULL THEN  -- the claimed output step's success, folded in
            SELECT * INTO f FROM step_commit_success(
                (m->>'run')::uuid, r.cl_id, r.cl_attempt, m->>'owner', NULL, m->'output',
                m->'output', NULL, '{}'::text[], NULL, 0, '{}'::text[], m->>'channel',
                ARRAY(SELECT jsonb_array_elements_text(m->'fold')));
            IF f.outcome = 'committed' THEN
                ob_ids := r.ob_ids || f.ob_ids;
                ob_steps := r.ob_steps || f.ob_steps;
                ob_tokens := r.ob_tokens || f.ob_tokens;
                cl_id := NULL;
                cl_type := NULL;
                cl_attempt := NULL;
                cl_max_attempts := NULL;
                cl_ctx := NULL;
            END IF;
        END IF;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END
$$;
