-- 0011_secret_bindings: whose secrets a shared flow runs with, and which version a share grants.
--
-- A run uses the secrets of the FLOW's owner, never those of the user who starts it. When the two
-- differ (a shared flow, an admin's run), only names the owner bound to that flow are loaded
-- (flow_secret_bindings); the runner's own secrets never reach templates they do not own.
CREATE TABLE flow_secret_bindings (
    flow_id    uuid NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}$'),
    created_by uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow_id, name)
);

-- The published version a share was granted (or accepted) for: a shared user runs a flow only while
-- its published version equals this one; a newer one needs the owner to share again or the user to
-- accept it (POST /api/v1/flows/{id}/shares/accept). Existing shares keep what is published now.
ALTER TABLE flow_shares ADD COLUMN version integer;
UPDATE flow_shares s SET version = f.published_version FROM flows f WHERE f.id = s.flow_id;
