-- 0024_runs_hot_updates: a run row's per-step update becomes a HOT update.
--
-- Every checkpoint transaction's flush sets the run's event_seq and updated_at. updated_at was a
-- column of the runs_live index, so each such update had to be a new tuple indexed anew in ALL of
-- runs' indexes (seven index insertions per step commit for a plain run; measured on the 200 x
-- 10-step bench: 2,616 run updates, 215 of them HOT). No query reads runs_live by updated_at in
-- order: the stuck-run pass (`recovery.settle_stuck_runs`) filters it row by row, and ops counts
-- live runs by status. Without it, an update that changes neither status nor any other indexed
-- column can be HOT (no index insertion), given room on the row's page: a fillfactor of 80 keeps
-- some on new pages (a run is updated about once per step, and page pruning reclaims the older
-- versions of a HOT chain without VACUUM).

DROP INDEX runs_live;
CREATE INDEX runs_live ON runs(status) WHERE status IN ('queued', 'running', 'waiting');
ALTER TABLE runs SET (fillfactor = 80);
