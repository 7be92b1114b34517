-- 0022_provider_known_cap: adaptive provider concurrency that remembers the limit it found
-- (BIC-TCP's binary search increase instead of +1 per round), and a cheaper permit check.
--
-- A 429 tells us what the provider held when it refused: our other calls in flight when the refused
-- one was admitted (`b`, kept on its permit), remembered as `known_cap`. The first 429, and one clearly
-- below the known cap (the provider lowered its limit, or a rate limit bites), take the effective
-- concurrency to 3/4 of b + 1 (multiplicative decrease); a 429 near the known cap (b >= 90% of it:
-- probing found it again) only sets it just below (b - 1): an explicit refusal at a known limit is
-- not congestion, and a dip to 3/4 there would idle a quarter of the provider for several rounds.
-- One such decision a second; the other 429s of the same burst can only lower it further to b - 1
-- and the known cap to b (never compounding): a call admitted after the first refused one counts
-- that one as in flight, so the smallest b of a burst is the best estimate. A success then closes half the gap
-- to the known cap per round of calls (BIC-TCP's binary search increase; at least 1/4 of a call
-- per round); past it, it probes: 1/4 per round at the cap, then the excess doubles every round (a
-- raised limit is found quickly). Slow start (before any 429) still doubles every round, but admits
-- at most 2 calls per permit request, so its overshoot past an unknown limit stays small.

-- provider_acquire_many admits a worker's whole line of waiting steps in one round trip (it
-- replaces provider_acquire, which stays as a line of one for workers of the previous release).
-- It first counts the provider's permit rows (an index range); only when that count leaves no room
-- does it run the exact count (permits whose step still holds its lease). Rows of dead leases only
-- make the cheap count larger: it never admits more than the exact count would.

ALTER TABLE providers ADD COLUMN known_cap double precision;  -- see above; NULL = none found yet
-- our other calls of the provider in flight when this permit was granted: what a 429 to it reveals
ALTER TABLE provider_permits ADD COLUMN in_flight_at integer;

-- Permits for several steps of one provider in ONE round trip, in their order (a worker's line of
-- waiting steps): 'ok' | 'concurrency' | 'rpm' | 'tpm' | 'gone' for each; after the first refusal
-- the rest of the line is refused with it (first come, first served). One provider row lock, one
-- count, one usage bucket update for the whole line.
CREATE FUNCTION provider_acquire_many(
    p_provider uuid, p_steps bigint[], p_attempts integer[], p_tokens bigint[]
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
    -- slow start (no 429 yet) admits at most 2 a call, clocked by the releases that trigger the
    -- calls: a whole line admitted at once past an unknown limit would all come back 429
    max_grant := CASE WHEN p.last_decrease_at IS NULL THEN 2 ELSE n END;
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

-- kept, as a line of one, for workers of the previous release during a rolling upgrade (this
-- release calls provider_acquire_many only)
CREATE OR REPLACE FUNCTION provider_acquire(
    p_provider uuid, p_step bigint, p_attempt integer, p_tokens bigint
) RETURNS text LANGUAGE sql AS $$
    SELECT (provider_acquire_many(p_provider, ARRAY[p_step], ARRAY[p_attempt], ARRAY[p_tokens]))[1]
$$;

-- 0020's function again with the new 429 rule (migrations are history: a copy by design).
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
                THEN greatest(1, least(effective_concurrency, b - 1))
                WHEN known_cap IS NOT NULL AND b >= 0.9 * known_cap  -- the known cap, confirmed
                THEN greatest(1, least(b - 1, ceiling))
                ELSE greatest(1, least(effective_concurrency, ceiling, b + 1) * 0.75) END,
            known_cap = CASE
                WHEN last_decrease_at >= clock_timestamp() - interval '1 second'
                THEN greatest(1, least(known_cap, b)) ELSE greatest(1, b) END,
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
                   ELSE greatest(effective_concurrency - known_cap, 0.25)  -- probe past it
                        / greatest(effective_concurrency, 1) END)
         WHERE id = permit.provider_id AND effective_concurrency < ceiling;
    END IF;
END
$$;
