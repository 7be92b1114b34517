-- 0003_runs_control: per-run param overrides (tweaks), fork lineage, and batches of runs.

ALTER TABLE runs ADD COLUMN tweaks jsonb NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN fork_of_node text;
CREATE INDEX runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL;

CREATE TABLE batches (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flow_id      uuid NOT NULL,
    flow_version integer NOT NULL,
    owner_id     uuid NOT NULL REFERENCES users(id),
    status       text NOT NULL DEFAULT 'loading'
        CHECK (status IN ('loading', 'running', 'succeeded', 'failed', 'cancelled')),
    total        integer NOT NULL DEFAULT 0,
    error        jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    loaded_at    timestamptz,
    finished_at  timestamptz,
    FOREIGN KEY (flow_id, flow_version) REFERENCES flow_versions(flow_id, version)
);
CREATE INDEX batches_owner ON batches(owner_id, created_at DESC);
ALTER TABLE runs ADD COLUMN batch_index integer;
CREATE UNIQUE INDEX runs_batch_item ON runs(batch_id, batch_index) WHERE batch_id IS NOT NULL;
CREATE INDEX runs_batch_status ON runs(batch_id, status) WHERE batch_id IS NOT NULL;
