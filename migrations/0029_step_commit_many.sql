-- 0029_step_commit_many: a group commit's chain members in ONE statement.
--
-- A group commit (`engine/groupcommit.py`) sent each chain member's `step_commit_success` (0027) as
-- a statement of its own in the group's first message: N statements to bind, execute and read back
-- for N members (psycopg's pipeline work was a fifth of a worker's CPU in `flowstudio bench`).
-- `step_commit_success_many(members)` calls it for each member in the order given (the group's
-- run-id lock order), one row per member with its index; a member's arguments are one JSON object
-- (`engine/onecall.py`, `many_statement`). Every call is the very function of 0027: the same rows
-- are written, and an error in any call (a broken plan, FS001) fails the statement, and with it
-- the group, as before. The COMMIT stays in the group's second message.

CREATE FUNCTION step_commit_success_many(p_members jsonb)
RETURNS TABLE (
    idx integer, outcome text, ob_ids bigint[], ob_steps bigint[], ob_tokens integer[],
    cl_id bigint, cl_type text, cl_attempt integer, cl_max_attempts integer, cl_ctx jsonb
) LANGUAGE plpgsql AS $$
DECLARE
    m jsonb;
    i integer := 0;
    r record;
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
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END
$$;
