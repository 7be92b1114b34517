-- 0026_batch_tail_wakeup: a batch is marked finished as its last run ends, not at the next poll.
--
-- The orchestrator's batch dispatcher (`engine/batches.py`) marks a running batch `succeeded` when a
-- pass finds none of its runs live and none unstarted; it polled every 0.25 s, so a batch ended on
-- average ~0.15 s, and up to 0.25 s, after its last run (measured on `flowstudio bench --llm`: the
-- last step finished 9.18 s after the batch was created, the batch 9.375 s). Once no unstarted run
-- is left (the batch's tail: at most BATCH_CONCURRENCY live runs), each started run that ends
-- NOTIFYs the dispatchers' channel (`engine.batches.BATCH_CHANNEL`, the one a loaded batch already
-- uses) with the batch id, and a dispatcher passes at once. Earlier in the batch nothing is sent:
-- the dispatcher's poll starts the next runs, and a NOTIFY per run would wake a pass per run. Runs
-- never started (cancelled in bulk with their batch) do not fire the trigger at all, so a bulk
-- cancel of 100,000 unstarted runs does not probe the batch once per row. The probe for an
-- unstarted run reads the (batch_id, status) index's queued entries: the few started runs still
-- `queued` and, before the tail, the first unstarted one.

CREATE FUNCTION batch_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM runs
                    WHERE batch_id = NEW.batch_id AND status = 'queued' AND event_seq = 1) THEN
        PERFORM pg_notify('flowstudio_batches', NEW.batch_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_batch_ended AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (NEW.batch_id IS NOT NULL
          AND NEW.status IN ('succeeded', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status
          AND NOT (OLD.status = 'queued' AND OLD.event_seq = 1))  -- started runs only
    EXECUTE FUNCTION batch_run_ended();
