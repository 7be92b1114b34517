-- 0017: the PostgreSQL queue backend (QUEUE_BACKEND=postgres): step pointers waiting for a worker.
-- A row is a message; a consumer takes it by moving `visible_at` into the future (FOR UPDATE SKIP
-- LOCKED) and deletes it on ack; a consumer that died before its ack lets the row become visible
-- again when `visible_at` passes (RabbitMQ's redelivery of unacked messages, by the database clock).
CREATE TABLE IF NOT EXISTS queue_messages (
    id          bigserial PRIMARY KEY,
    queue       text        NOT NULL,
    body        bytea       NOT NULL,
    visible_at  timestamptz NOT NULL DEFAULT now(),
    deliveries  integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS queue_messages_take ON queue_messages (queue, visible_at, id);
