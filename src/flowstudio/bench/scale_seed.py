"""Seed a throwaway database with a big history in the engine's own row layout, fast.

`seed(conn, runs, steps_per_run, events_per_step, days)` writes users, flows (+ version 1), `runs`
spread over the last `days` days (mostly succeeded, some failed or cancelled, a few live), their
`steps` (chains of `steps_per_run` nodes of mixed node types; a failed run's last step failed),
small `step_io` payloads and `run_events` rows (gapless `seq` per run), each table with ONE
`INSERT ... SELECT generate_series(...)`, then VACUUM ANALYZE (as autovacuum would have). Called by
`bench/scale.py`; never touches a database it did not create.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

log = logging.getLogger(__name__)
FLOWS = 50
OWNERS = 20
NODE_TYPES = ["input", "template", "http_request", "llm_chat", "condition", "json_transform"]

SEED_USERS = """INSERT INTO users (email, name, roles)
    SELECT 'scale-' || i || '@example.com', 'scale user ' || i,
           CASE WHEN i = 0 THEN ARRAY['admin'] ELSE ARRAY['editor'] END
    FROM generate_series(0, %(owners)s) i"""

SEED_FLOWS = """WITH owners AS (
        SELECT id, row_number() OVER (ORDER BY email) AS k FROM users WHERE email LIKE 'scale-%%')
    INSERT INTO flows (owner_id, name, definition, version)
    SELECT o.id, 'scale flow ' || i, '{"nodes": [], "edges": []}', 1
    FROM generate_series(1, %(flows)s) i JOIN owners o ON o.k = 1 + i %% %(owners)s"""

SEED_VERSIONS = """INSERT INTO flow_versions (flow_id, version, definition)
    SELECT id, 1, definition FROM flows"""

# run i: created i * spacing ago; status by i mod 100 (90 succeeded, 6 failed, 2 cancelled, 2 live)
SEED_RUNS = """WITH f AS (SELECT id, owner_id, row_number() OVER (ORDER BY id) - 1 AS k FROM flows),
    g AS (SELECT i, now() - make_interval(secs => i * %(spacing)s) AS created,
                 0.2 + (i * 7919 %% 4000) / 1000.0 AS dur,
                 CASE WHEN i %% 100 < 90 THEN 'succeeded' WHEN i %% 100 < 96 THEN 'failed'
                      WHEN i %% 100 < 98 THEN 'cancelled'
                      WHEN i %% 2 = 0 THEN 'running' ELSE 'waiting' END AS status
          FROM generate_series(1, %(runs)s) i)
    INSERT INTO runs (flow_id, flow_version, owner_id, status, inputs, outputs, error, event_seq,
                      created_at, started_at, finished_at, updated_at)
    SELECT f.id, 1, f.owner_id, g.status, jsonb_build_object('n', g.i),
           CASE WHEN g.status = 'succeeded' THEN '{"text": "ok"}'::jsonb END,
           CASE WHEN g.status = 'failed' THEN '{"message": "boom"}'::jsonb END,
           %(steps)s * %(events)s + 2, g.created, g.created + interval '20 ms',
           CASE WHEN g.status IN ('succeeded', 'failed', 'cancelled')
                THEN g.created + interval '20 ms' + make_interval(secs => g.dur) END,
           g.created
    FROM g JOIN f ON f.k = g.i %% %(flows)s"""

SEED_STEPS = """INSERT INTO steps (run_id, node_id, node_type, status, attempt, max_attempts,
                                   created_at, ready_at, started_at, finished_at, error)
    SELECT r.id, 'n' || k, (%(types)s::text[])[1 + k %% %(ntypes)s],
           CASE WHEN r.status = 'succeeded' THEN 'succeeded'
                WHEN r.status = 'failed' AND k = %(steps)s THEN 'failed'
                WHEN r.status = 'failed' THEN 'succeeded'
                WHEN r.status = 'cancelled' AND k > %(steps)s / 2 THEN 'cancelled'
                WHEN r.status = 'cancelled' THEN 'succeeded'
                WHEN k = 1 THEN 'running' ELSE 'pending' END,
           CASE WHEN r.status = 'failed' AND k = %(steps)s THEN 3 ELSE 1 END, 3,
           r.created_at, r.started_at, s.st, s.st + (r.finished_at - r.started_at) / %(steps)s,
           CASE WHEN r.status = 'failed' AND k = %(steps)s
                THEN '{"message": "HTTP 500 from upstream"}'::jsonb END
    FROM runs r CROSS JOIN generate_series(1, %(steps)s) k
    CROSS JOIN LATERAL (SELECT r.started_at
                        + (r.finished_at - r.started_at) * (k - 1) / %(steps)s AS st) s"""

SEED_FIX_LIVE = """UPDATE steps SET finished_at = NULL, started_at = NULL
    WHERE status IN ('pending', 'running') AND finished_at IS NOT NULL"""

SEED_IO = """INSERT INTO step_io (step_id, input, output)
    SELECT id, '{"text": "in"}', CASE WHEN status = 'succeeded' THEN '{"text": "out"}'::jsonb END
    FROM steps"""

# per step `events` transition rows (pending->ready->running->terminal ...), plus run queued/final
SEED_EVENTS = """INSERT INTO run_events (run_id, seq, at, kind, step_id, node_id, attempt,
                                        from_status, to_status)
    SELECT s.run_id, 1 + (substr(s.node_id, 2)::int - 1) * %(events)s + e,
           coalesce(s.started_at, s.created_at) + make_interval(secs => e * 0.001), 'step', s.id,
           s.node_id, s.attempt, 'ready', CASE WHEN e = %(events)s THEN s.status ELSE 'running' END
    FROM steps s CROSS JOIN generate_series(1, %(events)s) e"""

SEED_RUN_EVENTS = """INSERT INTO run_events (run_id, seq, at, kind, to_status)
    SELECT id, 1, created_at, 'run', 'queued' FROM runs
    UNION ALL
    SELECT id, event_seq, coalesce(finished_at, updated_at), 'run', status FROM runs"""


async def seed(
    conn: psycopg.AsyncConnection[Any],
    *,
    runs: int,
    steps_per_run: int,
    events_per_step: int,
    days: float,
) -> dict[str, float]:
    """Seed and return the seconds each table took (the caller prints them)."""
    params = {
        "owners": OWNERS,
        "flows": FLOWS,
        "runs": runs,
        "steps": steps_per_run,
        "events": events_per_step,
        "spacing": days * 86400.0 / runs,
        "types": NODE_TYPES,
        "ntypes": len(NODE_TYPES),
    }
    timings: dict[str, float] = {}
    for name, statement in (
        ("users", SEED_USERS),
        ("flows", SEED_FLOWS),
        ("versions", SEED_VERSIONS),
        ("runs", SEED_RUNS),
        ("steps", SEED_STEPS),
        ("steps_live", SEED_FIX_LIVE),
        ("step_io", SEED_IO),
        ("events", SEED_EVENTS),
        ("run_events", SEED_RUN_EVENTS),
    ):
        started = time.monotonic()
        await conn.execute(statement, params)
        timings[name] = round(time.monotonic() - started, 1)
        log.info("seeded %s in %.1fs", name, timings[name])
    started = time.monotonic()
    for table in ("runs", "steps", "step_io", "run_events", "flows", "users"):
        await conn.execute(f"VACUUM ANALYZE {table}")
    timings["vacuum"] = round(time.monotonic() - started, 1)
    return timings
