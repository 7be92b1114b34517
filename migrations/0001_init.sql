-- 0001_init: users, flows + immutable versions, runs, steps (the checkpoint), payloads, event log,
-- outbox, signals, process heartbeats, and the state-transition table enforced by a trigger.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL UNIQUE,
    name          text NOT NULL DEFAULT '',
    password_hash text,
    roles         text[] NOT NULL DEFAULT ARRAY['editor'],
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user ON api_keys(user_id);

CREATE TABLE flows (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    uuid NOT NULL REFERENCES users(id),
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    definition  jsonb NOT NULL,
    version     integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX flows_owner ON flows(owner_id, updated_at DESC) WHERE deleted_at IS NULL;

-- Immutable: a run pins (flow_id, version).
CREATE TABLE flow_versions (
    flow_id     uuid NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    version     integer NOT NULL,
    definition  jsonb NOT NULL,
    created_by  uuid REFERENCES users(id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow_id, version)
);

CREATE TABLE state_transitions (
    entity      text NOT NULL CHECK (entity IN ('run', 'step')),
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (entity, from_status, to_status)
);
-- Mirror of engine/states.py (tests/unit/test_states.py keeps them equal).
INSERT INTO state_transitions (entity, from_status, to_status) VALUES
    ('step', 'pending', 'ready'), ('step', 'pending', 'skipped'), ('step', 'ready', 'running'),
    ('step', 'running', 'succeeded'), ('step', 'running', 'retrying'), ('step', 'retrying', 'ready'),
    ('step', 'running', 'waiting'), ('step', 'waiting', 'succeeded'), ('step', 'running', 'failed'),
    ('step', 'waiting', 'failed'), ('step', 'retrying', 'failed'), ('step', 'running', 'ready'),
    ('step', 'pending', 'cancelled'), ('step', 'ready', 'cancelled'), ('step', 'running', 'cancelled'),
    ('step', 'retrying', 'cancelled'), ('step', 'waiting', 'cancelled'), ('step', 'failed', 'pending'),
    ('step', 'cancelled', 'pending'),
    ('run', 'queued', 'running'), ('run', 'running', 'waiting'), ('run', 'waiting', 'running'),
    ('run', 'running', 'succeeded'), ('run', 'waiting', 'succeeded'), ('run', 'queued', 'failed'),
    ('run', 'running', 'failed'), ('run', 'waiting', 'failed'), ('run', 'queued', 'cancelled'),
    ('run', 'running', 'cancelled'), ('run', 'waiting', 'cancelled'), ('run', 'failed', 'queued'),
    ('run', 'cancelled', 'queued');

CREATE FUNCTION enforce_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
        SELECT 1 FROM state_transitions
        WHERE entity = TG_ARGV[0] AND from_status = OLD.status AND to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'illegal % transition % -> %', TG_ARGV[0], OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE runs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flow_id         uuid NOT NULL,
    flow_version    integer NOT NULL,
    owner_id        uuid NOT NULL REFERENCES users(id),
    status          text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    inputs          jsonb NOT NULL DEFAULT '{}',
    outputs         jsonb,
    error           jsonb,
    idempotency_key text,
    event_seq       integer NOT NULL DEFAULT 0,
    parent_run_id   uuid REFERENCES runs(id) ON DELETE SET NULL,
    batch_id        uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (flow_id, flow_version) REFERENCES flow_versions(flow_id, version),
    UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX runs_flow_created ON runs(flow_id, created_at DESC, id DESC);
CREATE INDEX runs_owner_created ON runs(owner_id, created_at DESC, id DESC);
CREATE INDEX runs_live ON runs(status, updated_at) WHERE status IN ('queued', 'running', 'waiting');
CREATE INDEX runs_batch ON runs(batch_id) WHERE batch_id IS NOT NULL;
CREATE TRIGGER runs_transition BEFORE UPDATE OF status ON runs
    FOR EACH ROW EXECUTE FUNCTION enforce_transition('run');

-- The checkpoint: one row per node execution per item.
CREATE TABLE steps (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    node_id          text NOT NULL,
    item_index       integer NOT NULL DEFAULT 0,
    node_type        text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'ready', 'running', 'retrying', 'waiting', 'succeeded',
                          'failed', 'skipped', 'cancelled')),
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 1,
    branch           text,
    lease_owner      text,
    lease_expires_at timestamptz,
    due_at           timestamptz,
    dispatched_at    timestamptz,
    error            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    ready_at         timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    UNIQUE (run_id, node_id, item_index)
);
CREATE INDEX steps_due ON steps(due_at) WHERE status IN ('retrying', 'waiting');
CREATE INDEX steps_lease ON steps(lease_expires_at) WHERE status = 'running';
CREATE INDEX steps_ready ON steps(dispatched_at) WHERE status = 'ready';
CREATE INDEX steps_node_stats ON steps(node_type, finished_at) WHERE finished_at IS NOT NULL;
CREATE TRIGGER steps_transition BEFORE UPDATE OF status ON steps
    FOR EACH ROW EXECUTE FUNCTION enforce_transition('step');

-- Big payloads live outside the hot `steps` rows.
CREATE TABLE step_io (
    step_id bigint PRIMARY KEY REFERENCES steps(id) ON DELETE CASCADE,
    input   jsonb,
    output  jsonb
);

-- Append-only; seq is gapless per run (allocated from runs.event_seq under the run row lock).
CREATE TABLE run_events (
    run_id      uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL,
    step_id     bigint,
    node_id     text,
    item_index  integer,
    attempt     integer,
    from_status text,
    to_status   text,
    data        jsonb,
    PRIMARY KEY (run_id, seq)
);

-- Transactional outbox: messages are pointers (step id + fencing token), published only once committed.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     uuid NOT NULL,
    step_id    bigint NOT NULL,
    token      integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_created ON outbox(created_at);

-- External signals (human approval, webhooks) delivered to waiting steps.
CREATE TABLE signals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    node_id     text NOT NULL,
    item_index  integer NOT NULL DEFAULT 0,
    payload     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    consumed_at timestamptz
);
CREATE INDEX signals_pending ON signals(run_id, node_id) WHERE consumed_at IS NULL;

-- Live processes (workers, orchestrators, API) and their heartbeats, for ops dashboards.
CREATE TABLE processes (
    id           text PRIMARY KEY,
    kind         text NOT NULL,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    info         jsonb NOT NULL DEFAULT '{}'
);
