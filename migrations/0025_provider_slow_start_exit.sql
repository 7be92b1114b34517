-- 0025_provider_slow_start_exit: slow start's grants keep up with its releases, its first 429 sets
-- the concurrency to the limit it found instead of 3/4 of it, and a known cap is used whole.
--
-- 1. A worker asks for its line of waiting steps once at a time; releases made while an ask is in
--    flight are answered by the next ask, all at once. Slow start admitted at most 2 per ask, so a
--    burst of 30 releases (the first round of calls ending) took ~15 sequential asks to refill:
--    on `flowstudio bench --llm` the permits lagged the doubled limit by ~30 for ~0.3 s. An ask now
--    says how many releases it answers for (`p_releases`) and slow start admits 2 for each: still
--    clocked by the calls that ended, now without a round trip per pair.
-- 2. The first 429 ends slow start. It used to take the concurrency to 3/4 of what the provider held
--    (b + 1, b our other calls in flight when the refused one was admitted), then climb back over
--    ~4 rounds (~2 s at 0.5 s per call), a quarter of the provider idle at first. Slow start
--    overshoots by design: b is the most the provider took, the analogue of TCP's ssthresh at a
--    slow-start loss, so the concurrency goes to b, as for a 429 that confirms a known cap. The
--    multiplicative decrease (3/4) stays for what is congestion: a 429 clearly below the known cap
--    (the provider lowered its limit, or others took its capacity).
-- 3. A 429 at the known cap (and the other 429s of a burst) set the concurrency to b, no longer
--    b - 1: the refused call was the (b + 1)th, so b is the limit itself, and one below it left a
--    call's worth of the provider idle between probes (~1.5% at a cap of 64).
-- 4. Probing past a known cap that keeps being confirmed slows down. Each probe that finds the same
--    cap again costs one 429, and its step waits out the Retry-After (at the end of a batch, the
--    batch waits for it too). Past the known cap the concurrency grew by 1/4 of a call per round,
--    then by the excess (which compounds, ~x2.7 a round): a refused probe every 3 rounds, for
--    ever. Now the first step is 1/4 halved per confirmation in a row (`cap_confirmations`, at
--    most 6 halvings): a probe after 3, 4, 4, 5, 6, 6, then every 7 rounds while the cap holds; a
--    429 well above the known cap (> 10%: it rose), the first 429 or a 429 clearly below it start
--    counting again. The "same" cap is within 10% either way: a permit is held a little longer
--    than its call (the request's start, the answer's end), so b varies by a call or two between
--    probes at an unchanged limit, and a count reset by every +1 never grew (measured: probes
--    every 1.4 to 2.3 s of 0.5 s calls). A raised limit is still found quickly once a probe got
--    past the cap.
--
ALTER TABLE providers ADD COLUMN cap_confirmations integer NOT NULL DEFAULT 0;  -- see 4.

-- provider_acquire_many and provider_release are 0022's functions again with these changes
-- (migrations are history: copies by design). The 4-argument provider_acquire_many stays, as an ask
-- answering for one release, for workers of the previous release during a rolling upgrade.

CREATE FUNCTION provider_acquire_many(
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
    -- slow start (no 429 yet) admits at most 2 per release this ask answers for (2 for an ask
    -- no release triggered), clocked by the releases: a whole line admitted at once past an
    -- unknown limit would all come back 429
    max_grant := CASE WHEN p.last_decrease_at IS NULL THEN 2 * greatest(1, p_releases) ELSE n END;
    SELECT count(*) INTO flying FROM provider_permits WHERE provider_id = p_provider;
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

-- 0022's signature, for workers of the previous release: one release's worth
CREATE OR REPLACE FUNCTION provider_acquire_many(
    p_provider uuid, p_steps bigint[], p_attempts integer[], p_tokens bigint[]
) RETURNS text[] LANGUAGE sql AS $$
    SELECT provider_acquire_many(p_provider, p_steps, p_attempts, p_tokens, 1)
$$;

CREATE OR REPLACE FUNCTION provider_release(
    p_step bigint, p_attempt integer, p_outcome text, p_tokens bigint
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    permit provider_permits%ROWTYPE;
    provider uuid;
    b integer;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Locks in the order provider_acquire takes them (provider row, then permit, then usage
    -- bucket): a release that held a bucket or a permit while waiting for the provider row would
    -- deadlock with an acquire in the same second, or with the next attempt's acquire of its step.
    SELECT pp.provider_id INTO provider FROM provider_permits pp
     WHERE pp.step_id = p_step AND pp.attempt = p_attempt;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM providers WHERE id = provider FOR UPDATE;
    DELETE FROM provider_permits WHERE step_id = p_step AND attempt = p_attempt
    RETURNING * INTO permit;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_tokens IS NOT NULL AND p_tokens <> permit.tokens THEN
        UPDATE provider_usage SET tokens = greatest(0, tokens + p_tokens - permit.tokens)
         WHERE provider_id = permit.provider_id AND second = permit.second;
    END IF;
    IF p_outcome = 'throttled' THEN
        -- what the provider held when it refused this call: ours in flight when it was admitted
        -- (a permit granted before this migration has no such count: ours in flight now)
        b := coalesce(permit.in_flight_at, provider_in_flight(permit.provider_id));
        UPDATE providers SET
            throttled_total = throttled_total + 1,
            last_throttled_at = clock_timestamp(),
            effective_concurrency = CASE
                WHEN last_decrease_at >= clock_timestamp() - interval '1 second'  -- same burst
                THEN greatest(1, least(effective_concurrency, b))
                WHEN last_decrease_at IS NULL  -- slow start found the limit: go to it
                  OR (known_cap IS NOT NULL AND b >= 0.9 * known_cap)  -- the known cap, confirmed
                THEN greatest(1, least(b, ceiling))
                ELSE greatest(1, least(effective_concurrency, ceiling, b + 1) * 0.75) END,
            known_cap = CASE
                WHEN last_decrease_at >= clock_timestamp() - interval '1 second'
                THEN greatest(1, least(known_cap, b)) ELSE greatest(1, b) END,
            cap_confirmations = CASE
                WHEN last_decrease_at >= clock_timestamp() - interval '1 second'
                THEN cap_confirmations  -- the same burst: one decision
                WHEN last_decrease_at IS NOT NULL AND known_cap IS NOT NULL
                     AND b >= 0.9 * known_cap AND b <= 1.1 * known_cap
                THEN cap_confirmations + 1  -- a probe found the same cap again (give or take
                                            -- a call in a permit's own start and end)
                ELSE 0 END,
            last_decrease_at = CASE
                WHEN last_decrease_at >= clock_timestamp() - interval '1 second'
                THEN last_decrease_at ELSE clock_timestamp() END
         WHERE id = permit.provider_id;
    ELSIF p_outcome = 'ok' THEN
        UPDATE providers
           SET effective_concurrency = least(ceiling, effective_concurrency + CASE
                   WHEN last_decrease_at IS NULL THEN 1.0  -- slow start: doubles every round
                   WHEN known_cap IS NULL THEN 1.0 / greatest(effective_concurrency, 1)
                   WHEN effective_concurrency < known_cap  -- half the gap per round
                   THEN greatest(known_cap - effective_concurrency, 0.5) / 2
                        / greatest(effective_concurrency, 1)
                   ELSE greatest(effective_concurrency - known_cap,  -- probe past it
                                 0.25 / 2 ^ least(cap_confirmations, 6))
                        / greatest(effective_concurrency, 1) END)
         WHERE id = permit.provider_id AND effective_concurrency < ceiling;
    END IF;
END
$$;
