-- 0031_drop_runs_batch_index: runs_batch (batch_id WHERE batch_id IS NOT NULL, 0001) is redundant:
-- runs_batch_item (batch_id, batch_index), runs_batch_status (batch_id, status) and
-- runs_batch_created (batch_id, created_at, id) all lead with batch_id under the same predicate, and
-- every query by batch (the dispatcher's pick of unstarted runs, counts by status, item listing,
-- cancel) filters or orders by one of their second columns too. A run row's insert and each of its
-- status changes (not HOT: status is indexed) wrote one more index entry for nothing.

DROP INDEX IF EXISTS runs_batch;
