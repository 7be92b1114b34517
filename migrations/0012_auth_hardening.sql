-- 0012_auth_hardening: external identities by (provider, subject), scoped and expiring API keys,
-- webhook signing secrets, listable sessions with idle timeout, and the login
-- backoff's known clients. See README "Authentication and keys".

-- MAXplatform (and any later provider) users are found by the provider's immutable subject id, never
-- by email: an email collision with a local account is refused, not merged.
CREATE TABLE external_identities (
    provider     text NOT NULL,
    subject      text NOT NULL,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE UNIQUE INDEX external_identities_user ON external_identities(provider, user_id);

-- Scoped keys: 'full' (everything the user can), 'run' (run the user's flows), 'run:flow:<uuid>'.
ALTER TABLE api_keys ADD COLUMN scope text NOT NULL DEFAULT 'full'
    CHECK (scope IN ('full', 'run') OR scope ~ '^run:flow:[0-9a-f-]{36}$');
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

-- One signing secret per flow's webhook (AES-GCM ciphertext like user secrets: HMAC needs the value).
CREATE TABLE webhook_secrets (
    flow_id    uuid PRIMARY KEY REFERENCES flows(id) ON DELETE CASCADE,
    ciphertext bytea NOT NULL,
    nonce      bytea NOT NULL CHECK (octet_length(nonce) = 12),
    created_by uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Sessions get a public id (listing and revoking never show the token), last use and client facts.
ALTER TABLE sessions ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE sessions ADD CONSTRAINT sessions_id_key UNIQUE (id);
ALTER TABLE sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE sessions ADD COLUMN user_agent text NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN ip text NOT NULL DEFAULT '';

-- A role change ends every session of the user, whoever makes it (CLI, external sync, SQL).
CREATE FUNCTION revoke_sessions_on_role_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sessions WHERE user_id = NEW.id;
    RETURN NEW;
END $$;
CREATE TRIGGER users_roles_revoke_sessions AFTER UPDATE OF roles ON users
    FOR EACH ROW WHEN (OLD.roles IS DISTINCT FROM NEW.roles)
    EXECUTE FUNCTION revoke_sessions_on_role_change();

-- Login backoff: failures are counted per (email, address), per address and per email; a client that
-- logged in before (its address or its device cookie) is "known" and only meets its own counter.
CREATE INDEX login_attempts_email_ip ON login_attempts(email, ip, at DESC);
CREATE TABLE login_known_clients (
    email          text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('ip', 'device')),
    value          text NOT NULL,            -- the address, or the device cookie's SHA-256 (hex)
    last_success_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (email, kind, value)
);
CREATE INDEX login_known_clients_at ON login_known_clients(last_success_at);
