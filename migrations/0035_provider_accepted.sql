-- 0035_provider_accepted: slow start is clocked by the calls the provider admitted, not only by
-- the calls that ended.
--
-- 1. Slow start (no 429 yet) raised a provider's concurrency by one per call that ended well: it
--    doubled once per call length. LLM calls last seconds to minutes, so reaching a provider's
--    limit from the start window took a call length per doubling (32 -> 256 in three: 30 s of
--    10 s calls, the provider half idle), though a provider refuses a call at once (a 429 before
--    any generation): a call it did not refuse at once was admitted. A worker now reports a call
--    still unanswered PROVIDER_ACCEPT_AFTER_SECONDS after it went out as admitted, with its next
--    ask for its line (`p_accepted`, `providers/permits.py`): in slow start each one raises the
--    concurrency by one and earns 2 grants, as a release does, so slow start doubles once per
--    that delay. After slow start the count changes nothing.
-- 2. Such a call's release says 'done' instead of 'ok': in slow start it was counted already and
--    adds nothing; otherwise 'done' is 'ok' (the additive increase). If it failed instead (an
--    error after a report: a slow 5xx, or a quick one and the step's retry wait), it says
--    'failed', which takes its +1 back in slow start: a failing provider gets no more load.
-- 3. The ask answers whether the provider is still in slow start (`slow_start`), and not at its
--    ceiling: a worker reports admitted calls only then (after it, the reports would only cost
--    statements, and a row version each).
-- 4. An ask may forbid probing (`p_probe` false): no grant past the known cap. Past it, the
--    concurrency probes for a raised limit, and each probe that finds the same cap costs one 429
--    whose step waits out the Retry-After, then calls again: at the end of a batch the batch
--    waits for that step (measured: 1,000 items ended ~0.9 s late whenever a probe fell in their
--    last ~1.5 s). A worker forbids it when that refusal would outlast the work waiting behind
--    it (`Gate.may_probe`: its line, its calls in flight, their duration, the last Retry-After);
--    with nothing waiting long enough, a raised limit would be of no use anyway.
-- 5. Past the known cap the concurrency grows only while its window is used (no growth once
--    it is a call past the cap and the permits in flight are below it): asks that forbid
--    probing left it unused, and it grew by every success, untested, until one ask that may
--    probe was granted its whole line past the cap (a burst of 429s). TCP's congestion window
--    validation (RFC 7661) does the same.
--
-- provider_acquire_many (7 arguments) is 0028's with these changes, provider_release 0025's
-- (migrations are history: copies by design). The 5-argument provider_acquire_many stays for
-- workers of the previous release during a rolling upgrade.

CREATE FUNCTION provider_acquire_many(
    p_provider uuid, p_steps bigint[], p_attempts integer[], p_tokens bigint[], p_releases integer,
    p_accepted integer, p_probe boolean, OUT verdicts text[], OUT slow_start boolean
) LANGUAGE plpgsql AS $$
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
BEGIN
    verdicts := '{}';
    -- the provider row lock is held until COMMIT: do not hold it through a WAL flush too (a permit
    -- lost in a PostgreSQL crash is harmless: its step's lease is gone with it)
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT * INTO p FROM providers WHERE id = p_provider FOR UPDATE;
    IF NOT FOUND THEN
        verdicts := array_fill('gone'::text, ARRAY[n]);
        RETURN;
    END IF;
    slow_start := p.last_decrease_at IS NULL;
    IF slow_start AND p_accepted > 0 AND p.effective_concurrency < p.ceiling THEN  -- see 1.
        UPDATE providers
           SET effective_concurrency = least(ceiling, effective_concurrency + p_accepted)
         WHERE id = p_provider
        RETURNING * INTO p;
    END IF;
    t := clock_timestamp();  -- after the lock: the window is judged when we are admitted
    lim := greatest(1, floor(least(p.effective_concurrency, p.ceiling)));
    IF NOT p_probe AND NOT slow_start AND p.known_cap IS NOT NULL THEN  -- no probe (see 4.)
        lim := least(lim, greatest(1, floor(p.known_cap)));
    END IF;
    SELECT count(*) INTO flying FROM provider_permits WHERE provider_id = p_provider;
    -- slow start (no 429 yet) admits at most 2 per release or admitted call this ask answers for
    -- (2 for an ask that answers for none), clocked by them: a whole line admitted at once past
    -- an unknown limit would all come back 429; but up to its start window at once (0028)
    max_grant := CASE WHEN slow_start
                      THEN greatest(2 * greatest(1, p_releases + p_accepted),
                                    coalesce(p.start_window, 0) - flying)
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
    -- at its ceiling slow start has nothing left to find: workers stop reporting (see 3.)
    slow_start := slow_start AND p.effective_concurrency < p.ceiling;
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
END
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
    ELSIF p_outcome = 'failed' THEN  -- reported admitted, then failed: take its +1 back (2.)
        UPDATE providers SET effective_concurrency = greatest(1, effective_concurrency - 1)
         WHERE id = permit.provider_id AND last_decrease_at IS NULL;
    ELSIF p_outcome IN ('ok', 'done') THEN
        UPDATE providers
           SET effective_concurrency = least(ceiling, effective_concurrency + CASE
                   WHEN last_decrease_at IS NULL  -- slow start: doubles every round (once per
                   THEN CASE WHEN p_outcome = 'ok' THEN 1.0 ELSE 0.0 END  -- call: see 2.)
                   WHEN known_cap IS NULL THEN 1.0 / greatest(effective_concurrency, 1)
                   WHEN effective_concurrency < known_cap  -- half the gap per round
                   THEN greatest(known_cap - effective_concurrency, 0.5) / 2
                        / greatest(effective_concurrency, 1)
                   WHEN effective_concurrency >= known_cap + 1 AND (  -- see 5.
                            SELECT count(*) FROM provider_permits pp
                             WHERE pp.provider_id = permit.provider_id
                        ) + 1 < floor(effective_concurrency)
                   THEN 0.0
                   ELSE greatest(effective_concurrency - known_cap,  -- probe past it
                                 0.25 / 2 ^ least(cap_confirmations, 6))
                        / greatest(effective_concurrency, 1) END)
         WHERE id = permit.provider_id AND effective_concurrency < ceiling;
    END IF;
END
$$;
