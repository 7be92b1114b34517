-- 0028_provider_start_window: slow start fills its start window in one ask.
--
-- 1. A provider in slow start (no 429 yet) admitted at most 2 steps per ask that answered for no
--    release, so its first window (PROVIDER_INITIAL_CONCURRENCY, 32, or an admin's
--    max_concurrency) took 16 or more asks to fill: every first LLM step of a batch asked alone,
--    concurrently, and they queued for the provider row's lock and the worker's pool behind the
--    batch's claims and commits. On `flowstudio bench --llm` the 32nd permit came 0.33 s after
--    the first (measured), a quarter of the provider's first second idle. The window a provider
--    starts at is known to be safe: `start_window` remembers it, and an ask may fill the
--    concurrency up to it at once; beyond it, slow start is clocked by releases as before (2
--    per release). The worker's line (`providers/permits.py`) now lines a step up behind an ask
--    in flight instead of asking alongside it, so the first window is asked for in one or two
--    statements.
--
-- provider_acquire_many is 0025's with that change (migrations are history: copies by design).

-- the concurrency slow start began at (set by every path that starts it); NULL: as before
ALTER TABLE providers ADD COLUMN start_window integer;

CREATE OR REPLACE FUNCTION provider_acquire_many(
    p_provider uuid, p_steps bigint[], p_attempts integer[], p_tokens bigint[], p_releases integer
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    p providers%ROWTYPE;
    t timestamptz;
    n integer := coalesce(array_length(p_steps, 1), 0);
    lim integer;
    flying integer;
    used_requests bigint := 0;
    used_tokens bigint := 0;
    granted integer := 0;
    max_grant integer;
    granted_tokens bigint := 0;
    verdict text := 'ok';
    verdicts text[] := '{}';
BEGIN
    -- the provider row lock is held until COMMIT: do not hold it through a WAL flush too (a permit
    -- lost in a PostgreSQL crash is harmless: its step's lease is gone with it)
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT * INTO p FROM providers WHERE id = p_provider FOR UPDATE;
    IF NOT FOUND THEN
        RETURN array_fill('gone'::text, ARRAY[n]);
    END IF;
    t := clock_timestamp();  -- after the lock: the window is judged when we are admitted
    lim := greatest(1, floor(least(p.effective_concurrency, p.ceiling)));
    SELECT count(*) INTO flying FROM provider_permits WHERE provider_id = p_provider;
    -- slow start (no 429 yet) admits at most 2 per release this ask answers for (2 for an ask
    -- no release triggered), clocked by the releases: a whole line admitted at once past an
    -- unknown limit would all come back 429; but up to its start window at once (see 1.)
    max_grant := CASE WHEN p.last_decrease_at IS NULL
                      THEN greatest(2 * greatest(1, p_releases), coalesce(p.start_window, 0) - flying)
                      ELSE n END;
    IF flying >= lim THEN  -- nobody would get in: count exactly (live leases only)
        flying := provider_in_flight(p_provider);
    END IF;
    IF p.rpm IS NOT NULL OR p.tpm IS NOT NULL THEN
        SELECT coalesce(sum(requests), 0), coalesce(sum(tokens), 0)
          INTO used_requests, used_tokens
          FROM provider_usage
         WHERE provider_id = p_provider AND second > t - interval '61 seconds';
    END IF;
    FOR i IN 1 .. n LOOP
        IF verdict = 'ok' THEN
            IF flying + granted >= lim OR granted >= max_grant THEN
                verdict := 'concurrency';
            ELSIF p.rpm IS NOT NULL AND used_requests + granted >= p.rpm THEN
                verdict := 'rpm';
            -- a call bigger than the whole budget still goes alone into an empty window
            ELSIF p.tpm IS NOT NULL AND used_tokens + granted_tokens > 0
                  AND used_tokens + granted_tokens + p_tokens[i] > p.tpm THEN
                verdict := 'tpm';
            ELSE
                granted := granted + 1;
                granted_tokens := granted_tokens + p_tokens[i];
                DELETE FROM provider_permits WHERE step_id = p_steps[i];  -- an earlier attempt's
                INSERT INTO provider_permits (step_id, attempt, provider_id, tokens, second,
                                              acquired_at, in_flight_at)
                VALUES (p_steps[i], p_attempts[i], p_provider, p_tokens[i],
                        date_trunc('second', t), t, flying + granted - 1);
            END IF;
        END IF;
        verdicts := verdicts || verdict;
    END LOOP;
    IF granted > 0 THEN
        INSERT INTO provider_usage AS u (provider_id, second, requests, tokens)
        VALUES (p_provider, date_trunc('second', t), granted, granted_tokens)
        ON CONFLICT (provider_id, second)
        DO UPDATE SET requests = u.requests + EXCLUDED.requests,
                      tokens = u.tokens + EXCLUDED.tokens;
        DELETE FROM provider_parked WHERE step_id = ANY(p_steps[1:granted]);
        IF p.last_used_at IS NULL OR p.last_used_at < t - interval '1 minute' THEN
            UPDATE providers SET last_used_at = t WHERE id = p_provider;
        END IF;
    END IF;
    RETURN verdicts;
END
$$;
