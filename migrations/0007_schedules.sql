-- 0007_schedules: cron schedules per flow, fired by orchestrators exactly once per tick.

CREATE TABLE schedules (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flow_id       uuid NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    owner_id      uuid NOT NULL REFERENCES users(id),
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    inputs        jsonb NOT NULL DEFAULT '{}',
    catchup       text NOT NULL DEFAULT 'latest' CHECK (catchup IN ('skip', 'latest', 'all')),
    max_catchup   integer NOT NULL DEFAULT 100,
    enabled       boolean NOT NULL DEFAULT true,
    next_fire_at  timestamptz NOT NULL,
    last_fired_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules(next_fire_at) WHERE enabled;
CREATE INDEX schedules_flow ON schedules(flow_id);

-- One row per (schedule, tick): the primary key is what makes a tick fire at most once.
CREATE TABLE schedule_fires (
    schedule_id uuid NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    fire_time   timestamptz NOT NULL,
    run_id      uuid REFERENCES runs(id) ON DELETE SET NULL,
    fired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, fire_time)
);
