-- 0023_provider_wake_when_full: parked steps no longer starve behind a busy provider's lines.
--
-- 0020 woke a due parked step only into free concurrency. A provider kept at its limit by the lines
-- of steps waiting in the workers (a batch) has none, ever: a step parked by a 429 then waited
-- until the whole batch had drained (measured: a 1,000-item batch's 429s at 1.5 s woken at 4.0 s,
-- one at 7.4 s finished last, 1.2 s after the rest). Now the oldest due parked steps are woken up to
-- the provider's whole limit (minus those woken in the last 10 s still without a permit), free or
-- not, and within its requests per minute: a woken step asks again, so the worker lines it up
-- ahead of every first attempt (`providers/permits.py`), and it takes the next permit a release
-- frees. At most a limit's worth is ever woken and waiting, so a saturated provider costs a bounded
-- number of wake-ups, not a storm.
--
-- 0020's function again with the new LIMIT (migrations are history: a copy by design).

CREATE OR REPLACE FUNCTION provider_wake_candidates(p_limit integer)
RETURNS TABLE (step_id bigint, run_id uuid, provider_id uuid) LANGUAGE sql AS $$
    WITH due AS (
        SELECT DISTINCT k.provider_id FROM provider_parked k
        WHERE k.woken_at IS NULL AND k.not_before <= clock_timestamp()
    ), room AS (
        SELECT p.id, p.rpm,
               floor(least(p.effective_concurrency, p.ceiling))::integer AS slots,
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
        LIMIT greatest(0, least(greatest(r.slots, 1) - r.woken,
                                coalesce(r.rpm - r.used - r.woken, p_limit), p_limit))
    ) k
    UNION ALL  -- steps parked for a provider an admin deleted: they register it again
    (SELECT k.step_id, k.run_id, k.provider_id FROM provider_parked k
     WHERE k.woken_at IS NULL AND NOT EXISTS (SELECT 1 FROM providers p WHERE p.id = k.provider_id)
     LIMIT p_limit)
$$;
