-- 0022_provider_known_cap: adaptive provider concurrency that remembers the limit it found
-- (BIC-TCP's binary search increase instead of +1 per round), and a cheaper permit check.
--
-- A 429 tells us what the provider held when it refused: the calls of ours admitted before the
-- refused one and still in flight (`b`). That is remembered as `known_cap`. The first 429, or one
-- clearly below the known cap (the provider lowered its limit, or a rate limit bites), takes the
-- effective concurrency to 3/4 of b + 1, at most once a second, as before. A 429 while probing at
-- the known cap (b >= known_cap - 1) only confirms it: effective = b - 1, no dip. A success then closes
-- half the gap to the known cap per round of calls (at least 1/4 of a call per round); past it, it
-- probes: 1/4 per round at the cap, then the excess doubles every round (a raised limit is found
-- quickly). Slow start (before any 429) still doubles every round.
--
-- provider_acquire first counts the provider's permit rows (an index range); only when that count
-- reaches the limit does it run the exact count (permits whose step still holds its lease). Rows
-- of dead leases only make the cheap count larger, so the verdict is the same as before.

ALTER TABLE providers ADD COLUMN known_cap double precision;  -- see above; NULL = none found yet

CREATE OR REPLACE FUNCTION provider_acquire(
    p_provider uuid, p_step bigint, p_attempt integer, p_tokens bigint
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    p providers%ROWTYPE;
    t timestamptz;
    lim integer;
    used_requests bigint;
    used_tokens bigint;
BEGIN
    -- the provider row lock is held until COMMIT: do not hold it through a WAL flush too (a permit
    -- lost in a PostgreSQL crash is harmless: its step's lease is gone with it)
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT * INTO p FROM providers WHERE id = p_provider FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    t := clock_timestamp();  -- after the lock: the window is judged when we are admitted
    DELETE FROM provider_permits WHERE step_id = p_step;  -- an earlier attempt's leftover
    lim := greatest(1, floor(least(p.effective_concurrency, p.ceiling)));
    IF (SELECT count(*) FROM provider_permits WHERE provider_id = p_provider) >= lim
       AND provider_in_flight(p_provider) >= lim THEN
        RETURN 'concurrency';
    END IF;
    IF p.rpm IS NOT NULL OR p.tpm IS NOT NULL THEN
        SELECT coalesce(sum(requests), 0), coalesce(sum(tokens), 0)
          INTO used_requests, used_tokens
          FROM provider_usage
         WHERE provider_id = p_provider AND second > t - interval '61 seconds';
        IF p.rpm IS NOT NULL AND used_requests >= p.rpm THEN
            RETURN 'rpm';
        END IF;
        -- a call bigger than the whole budget still goes alone into an empty window
        IF p.tpm IS NOT NULL AND used_tokens > 0 AND used_tokens + p_tokens > p.tpm THEN
            RETURN 'tpm';
        END IF;
    END IF;
    INSERT INTO provider_permits (step_id, attempt, provider_id, tokens, second, acquired_at)
    VALUES (p_step, p_attempt, p_provider, p_tokens, date_trunc('second', t), t);
    INSERT INTO provider_usage AS u (provider_id, second, requests, tokens)
    VALUES (p_provider, date_trunc('second', t), 1, p_tokens)
    ON CONFLICT (provider_id, second)
    DO UPDATE SET requests = u.requests + 1, tokens = u.tokens + EXCLUDED.tokens;
    DELETE FROM provider_parked WHERE step_id = p_step;
    IF p.last_used_at IS NULL OR p.last_used_at < t - interval '1 minute' THEN
        UPDATE providers SET last_used_at = t WHERE id = p_provider;
    END IF;
    RETURN 'ok';
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
        -- what the provider held when it refused this call: ours admitted before it, still flying
        SELECT count(*) INTO b FROM provider_permits pp
          JOIN steps s ON s.id = pp.step_id AND s.attempt = pp.attempt
         WHERE pp.provider_id = permit.provider_id AND pp.acquired_at < permit.acquired_at
           AND s.status = 'running' AND s.lease_expires_at > clock_timestamp();
        UPDATE providers SET
            throttled_total = throttled_total + 1,
            last_throttled_at = clock_timestamp(),
            effective_concurrency = CASE
                WHEN last_decrease_at >= clock_timestamp() - interval '1 second'
                THEN effective_concurrency
                WHEN known_cap IS NOT NULL AND b >= known_cap - 1  -- the known cap, confirmed
                THEN greatest(1, least(b - 1, ceiling))
                ELSE greatest(1, least(effective_concurrency, ceiling, b + 1) * 0.75) END,
            known_cap = CASE
                WHEN last_decrease_at >= clock_timestamp() - interval '1 second' THEN known_cap
                ELSE greatest(1, b) END,
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
