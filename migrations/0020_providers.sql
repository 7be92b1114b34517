-- Provider limits, cluster-wide (issue 12): who a provider is, the permits of calls in flight, the
-- per-second usage window (RPM/TPM) and the steps parked until a provider has capacity again.
-- The Python side is src/flowstudio/providers/ (permits, parking) and src/flowstudio/store/providers.py.
--
-- A permit is tied to its step's lease: it counts only while that step is `running` with the same
-- attempt (the fencing token) and an unexpired lease. A worker that dies (lease expiry, or the fast
-- takeover ending its leases) therefore frees its permits at once, without any cleanup; stale rows
-- are purged later. Acquire and release are functions so that each runs as ONE round trip and each
-- of their statements sees a fresh snapshot after the provider row lock (no over-admission).

CREATE TABLE providers (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    base_url              text NOT NULL,
    key_fingerprint       text NOT NULL DEFAULT '',  -- HMAC-SHA256 of the API key; '' = no key
    label                 text,
    max_concurrency       integer CHECK (max_concurrency >= 1),
    rpm                   integer CHECK (rpm >= 1),
    tpm                   bigint CHECK (tpm >= 1),
    ceiling               integer NOT NULL CHECK (ceiling >= 1),  -- max_concurrency or the default
    effective_concurrency double precision NOT NULL,               -- AIMD, in [1, ceiling]
    throttled_total       bigint NOT NULL DEFAULT 0,
    last_throttled_at     timestamptz,
    last_decrease_at      timestamptz,
    last_used_at          timestamptz,  -- the last permit, to the minute
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (base_url, key_fingerprint)
);

CREATE TABLE provider_permits (
    step_id     bigint PRIMARY KEY,   -- one call in flight per step
    attempt     integer NOT NULL,     -- the step's fencing token when the permit was taken
    provider_id uuid NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    tokens      bigint NOT NULL,      -- the estimate counted in `second`
    second      timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_permits_provider ON provider_permits(provider_id);

CREATE TABLE provider_usage (
    provider_id uuid NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    second      timestamptz NOT NULL,
    requests    integer NOT NULL DEFAULT 0,
    tokens      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (provider_id, second)
);

CREATE TABLE provider_parked (
    step_id     bigint PRIMARY KEY,
    run_id      uuid NOT NULL,
    provider_id uuid NOT NULL,  -- no FK: a deleted provider's parked steps are woken, not lost
    not_before  timestamptz NOT NULL,   -- a 429's Retry-After; now() when parked for capacity
    woken_at    timestamptz,            -- set when made ready again; the row goes at its next permit
    reason      text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_parked_due ON provider_parked(provider_id, parked_at) WHERE woken_at IS NULL;

-- calls of a provider in flight now (permits whose step still holds its lease)
CREATE FUNCTION provider_in_flight(p_provider uuid) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer FROM provider_permits pp
    JOIN steps s ON s.id = pp.step_id AND s.attempt = pp.attempt
    WHERE pp.provider_id = p_provider AND s.status = 'running'
      AND s.lease_expires_at > clock_timestamp()
$$;

-- 'ok' (permit taken and counted) | 'concurrency' | 'rpm' | 'tpm' | 'gone' (no such provider)
CREATE FUNCTION provider_acquire(p_provider uuid, p_step bigint, p_attempt integer, p_tokens bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    p providers%ROWTYPE;
    t timestamptz;
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
    IF provider_in_flight(p_provider) >= greatest(1, floor(least(p.effective_concurrency, p.ceiling)))
    THEN
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
    INSERT INTO provider_permits (step_id, attempt, provider_id, tokens, second)
    VALUES (p_step, p_attempt, p_provider, p_tokens, date_trunc('second', t));
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

-- End a call: free the permit, correct the token estimate from the response's usage, and adapt the
-- effective concurrency: 'ok' adds 1 until the first 429 (slow start: doubles every round of calls),
-- then 1/effective (AIMD: about +1 per round); 'throttled' (a 429) takes it to 3/4 of what was in
-- flight, at most once a second, never below 1.
CREATE FUNCTION provider_release(p_step bigint, p_attempt integer, p_outcome text, p_tokens bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    permit provider_permits%ROWTYPE;
    provider uuid;
    flying integer;
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
        flying := provider_in_flight(permit.provider_id) + 1;
        UPDATE providers SET
            throttled_total = throttled_total + 1,
            last_throttled_at = clock_timestamp(),
            effective_concurrency = CASE
                WHEN last_decrease_at IS NULL OR last_decrease_at < clock_timestamp() - interval '1 second'
                THEN greatest(1, least(effective_concurrency, ceiling, flying) * 0.75)
                ELSE effective_concurrency END,
            last_decrease_at = CASE
                WHEN last_decrease_at IS NULL OR last_decrease_at < clock_timestamp() - interval '1 second'
                THEN clock_timestamp() ELSE last_decrease_at END
         WHERE id = permit.provider_id;
    ELSIF p_outcome = 'ok' THEN
        UPDATE providers
           SET effective_concurrency = least(ceiling, effective_concurrency + CASE
                   WHEN last_decrease_at IS NULL THEN 1.0  -- slow start: doubles every round
                   ELSE 1.0 / greatest(effective_concurrency, 1) END)
         WHERE id = permit.provider_id AND effective_concurrency < ceiling;
    END IF;
END
$$;

-- Parked steps to wake now, oldest first: per provider, at most its free concurrency (minus steps
-- woken in the last 10 s that have not taken their permit yet) and its free requests this minute;
-- and every step parked for a provider that no longer exists.
CREATE FUNCTION provider_wake_candidates(p_limit integer)
RETURNS TABLE (step_id bigint, run_id uuid, provider_id uuid) LANGUAGE sql AS $$
    WITH due AS (
        SELECT DISTINCT k.provider_id FROM provider_parked k
        WHERE k.woken_at IS NULL AND k.not_before <= clock_timestamp()
    ), room AS (
        SELECT p.id, p.rpm,
               floor(least(p.effective_concurrency, p.ceiling))::integer
                   - provider_in_flight(p.id) AS free_slots,
               (SELECT count(*) FROM provider_parked w
                WHERE w.provider_id = p.id
                  AND w.woken_at > clock_timestamp() - interval '10 seconds')::integer AS woken,
               (SELECT coalesce(sum(u.requests), 0) FROM provider_usage u
                WHERE u.provider_id = p.id
                  AND u.second > clock_timestamp() - interval '61 seconds')::integer AS used
        FROM providers p JOIN due ON due.provider_id = p.id
    )
    SELECT k.step_id, k.run_id, k.provider_id FROM room r
    CROSS JOIN LATERAL (
        SELECT k.step_id, k.run_id, k.provider_id FROM provider_parked k
        WHERE k.provider_id = r.id AND k.woken_at IS NULL AND k.not_before <= clock_timestamp()
        ORDER BY k.parked_at
        LIMIT greatest(0, least(r.free_slots - r.woken,
                                coalesce(r.rpm - r.used - r.woken, p_limit), p_limit))
    ) k
    UNION ALL  -- steps parked for a provider an admin deleted: they register it again
    (SELECT k.step_id, k.run_id, k.provider_id FROM provider_parked k
     WHERE k.woken_at IS NULL AND NOT EXISTS (SELECT 1 FROM providers p WHERE p.id = k.provider_id)
     LIMIT p_limit)
$$;
