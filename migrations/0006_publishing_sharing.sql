-- 0006_publishing_sharing: the published version of a flow (what API callers run by default), endpoint
-- names (per-owner aliases of flow ids for /run, webhooks and the OpenAI endpoint) and flow sharing.

ALTER TABLE flows ADD COLUMN published_version integer;
-- Only an existing version can be published (NULL = never published: callers run the latest).
ALTER TABLE flows ADD CONSTRAINT flows_published_version_fk
    FOREIGN KEY (id, published_version) REFERENCES flow_versions(flow_id, version);

ALTER TABLE flows ADD COLUMN endpoint_name text
    CHECK (endpoint_name ~ '^[a-z0-9][a-z0-9_-]{0,62}$');
-- Unique per owner among live flows: a deleted flow frees its name.
CREATE UNIQUE INDEX flows_owner_endpoint_name ON flows(owner_id, endpoint_name)
    WHERE endpoint_name IS NOT NULL AND deleted_at IS NULL;

-- A flow shared with another user: 'run' lets them start runs of it, 'view' only read it. Neither
-- lets them edit it; the runs they start are theirs (owner_id = the runner), not the flow owner's.
CREATE TABLE flow_shares (
    flow_id    uuid NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    permission text NOT NULL CHECK (permission IN ('run', 'view')),
    created_by uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow_id, user_id)
);
CREATE INDEX flow_shares_user ON flow_shares(user_id);

-- Runs list filters: a batch's runs in creation order (keyset on created_at, id).
CREATE INDEX runs_batch_created ON runs(batch_id, created_at DESC, id DESC) WHERE batch_id IS NOT NULL;
