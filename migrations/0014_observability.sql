-- 0014_observability: indexes for the run list and the ops page at scale, the metrics rollups
-- (per-minute and cumulative, advanced incrementally by store/metrics_rollup.py), persisted
-- per-process counters (LLM calls/tokens/429s), and the run's trace context (W3C traceparent).

-- Run list without an owner/flow filter, and by status: keyset order (created_at DESC, id DESC).
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS runs_status_created ON runs(status, created_at DESC, id DESC);
-- Rollup advance and ops windows read finished rows by time.
CREATE INDEX IF NOT EXISTS runs_finished ON runs(finished_at) WHERE finished_at IS NOT NULL;
DROP INDEX IF EXISTS steps_node_stats;  -- (node_type, finished_at): replaced, a range needs finished_at first
CREATE INDEX IF NOT EXISTS steps_finished ON steps(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS steps_failed_at ON steps(finished_at) WHERE status = 'failed';

-- W3C trace context of the span that created the run (NULL unless OpenTelemetry is on).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS traceparent text;

-- Runs that reached a terminal status, per minute of finished_at. `le` is the duration bucket
-- (index into store/metrics_rollup.BOUNDS, -1 = never started); `seconds` sums durations.
CREATE TABLE metrics_runs_minute (
    bucket   timestamptz NOT NULL,
    flow_id  uuid NOT NULL,
    owner_id uuid NOT NULL,
    status   text NOT NULL,
    le       smallint NOT NULL,
    n        bigint NOT NULL,
    seconds  double precision NOT NULL,
    PRIMARY KEY (bucket, flow_id, owner_id, status, le)
);

CREATE INDEX metrics_runs_minute_owner ON metrics_runs_minute(owner_id, bucket)
    INCLUDE (flow_id, status, le, n);  -- non-admin views: index-only scans
-- throughput over long admin windows: an index-only scan of (bucket, status, n)
CREATE INDEX metrics_runs_minute_throughput ON metrics_runs_minute(bucket) INCLUDE (status, n);

-- Step executions that reached a terminal status, per minute; `retries` = attempts beyond the first.
CREATE TABLE metrics_steps_minute (
    bucket    timestamptz NOT NULL,
    node_type text NOT NULL,
    owner_id  uuid NOT NULL,
    status    text NOT NULL,
    le        smallint NOT NULL,
    n         bigint NOT NULL,
    seconds   double precision NOT NULL,
    retries   bigint NOT NULL,
    PRIMARY KEY (bucket, node_type, owner_id, status, le)
);
CREATE INDEX metrics_steps_minute_owner ON metrics_steps_minute(owner_id, bucket)
    INCLUDE (node_type, le, n);

-- The same per hour without the owner: long admin windows read ~60x fewer rows.
CREATE TABLE metrics_runs_hour (
    bucket  timestamptz NOT NULL,
    flow_id uuid NOT NULL,
    status  text NOT NULL,
    le      smallint NOT NULL,
    n       bigint NOT NULL,
    seconds double precision NOT NULL,
    PRIMARY KEY (bucket, flow_id, status, le)
);
CREATE TABLE metrics_steps_hour (
    bucket    timestamptz NOT NULL,
    node_type text NOT NULL,
    status    text NOT NULL,
    le        smallint NOT NULL,
    n         bigint NOT NULL,
    seconds   double precision NOT NULL,
    PRIMARY KEY (bucket, node_type, status, le)
);

-- Cumulative totals since the database was created (what /metrics reads: small, one scan).
-- family 'runs': key1 = status, key2 = flow_id; family 'steps': key1 = node_type, key2 = status.
CREATE TABLE metrics_totals (
    family  text NOT NULL,
    key1    text NOT NULL,
    key2    text NOT NULL,
    le      smallint NOT NULL,
    n       bigint NOT NULL,
    seconds double precision NOT NULL,
    retries bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (family, key1, key2, le)
);

-- How far the rollups reach: rows finished before `upto` are in them, later ones are not.
CREATE TABLE metrics_rollup_state (
    id   integer PRIMARY KEY CHECK (id = 1),
    upto timestamptz NOT NULL
);
INSERT INTO metrics_rollup_state (id, upto) VALUES (1, '1970-01-01 00:00:00+00');

-- Counters that processes other than the API make (LLM calls, tokens, 429s), flushed as deltas
-- every few seconds, so one scrape of the API covers every process and restarts lose nothing.
CREATE TABLE metrics_counters (
    family     text NOT NULL,
    labels     text NOT NULL,  -- canonical JSON object of the label values
    value      double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (family, labels)
);
