-- 0002_secrets: per-user encrypted secrets (AES-256-GCM, key derived from SECRET_KEY; see
-- src/flowstudio/auth/secrets.py) and failed login attempts for the login rate limit.

CREATE TABLE secrets (
    owner_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}$'),
    ciphertext  bytea NOT NULL,           -- AES-GCM output (ciphertext || 16-byte tag)
    nonce       bytea NOT NULL CHECK (octet_length(nonce) = 12),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, name)          -- unique (owner_id, name)
);

-- One row per FAILED login; the limiter counts rows per email and per client IP in a time window.
-- Persisted (not in memory) so the limit holds across any number of API processes.
CREATE TABLE login_attempts (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email  text NOT NULL,
    ip     text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_email ON login_attempts(email, at DESC);
CREATE INDEX login_attempts_ip ON login_attempts(ip, at DESC);
CREATE INDEX login_attempts_at ON login_attempts(at);
