"""Metrics rollups: terminal runs and step executions aggregated per minute and cumulatively.

`advance(conn)` moves the watermark `metrics_rollup_state.upto` to `now() - MARGIN` and folds every
run and step whose `finished_at` lies in [old upto, new upto) into `metrics_runs_minute`,
`metrics_steps_minute` (what the ops page reads for its windows; `metrics_*_hour`, without the
owner, for long admin windows) and `metrics_totals` (what
`GET /metrics` reads: counters and histograms since the beginning), in one transaction. The state
row is taken `FOR UPDATE SKIP LOCKED`, so any number of orchestrators and API processes may call it:
one advances, the others return at once. It costs one indexed range scan over the few seconds of
rows since the last call; nothing is added to the engine's hot path. A database migrated with a
long history catches up CATCH_UP_HOURS per call (from its first finished run), so no call holds a
transaction for long; counters meanwhile show the part folded so far.
`RUNS_AGG` / `STEPS_AGG` are also read live over [upto, now()) by `store/ops.py`, so a window is
exact up to the present. MARGIN: a row whose finished_at is older than MARGIN when it commits (a
transaction that stayed open that long after setting it) is missed by the rollup; the engine's
checkpoint transactions last milliseconds.
Durations are bucketed by `BOUNDS` (the `le` column is the index of the first bound above the
value, len(BOUNDS) for +Inf, -1 for a run that never started); `percentile` reads a merged histogram
as Prometheus' histogram_quantile does (linear inside a bucket).
"""

from __future__ import annotations

from typing import Any

from flowstudio.store.db import Conn
from flowstudio.store.statuses import RUN_ENDED_SQL, StepStatus, sql_list, sql_value, values

BOUNDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)  # fmt: skip
MARGIN_SECONDS = 2.0
CATCH_UP_HOURS = 24  # at most this much history per call: an old database catches up in steps
S = StepStatus
_B = "ARRAY[" + ",".join(repr(b) for b in BOUNDS) + "]::float8[]"

RUNS_AGG = f"""SELECT date_trunc('minute', r.finished_at) AS bucket, r.flow_id, r.owner_id, r.status,
           CASE WHEN r.started_at IS NULL THEN -1 ELSE width_bucket(
               extract(epoch FROM r.finished_at - r.started_at)::float8, {_B}) END AS le,
           count(*) AS n,
           coalesce(sum(extract(epoch FROM r.finished_at - r.started_at)), 0)::float8 AS seconds
    FROM runs r
    WHERE r.finished_at >= %(lo)s AND r.finished_at < %(hi)s
      AND r.status IN {RUN_ENDED_SQL}
    GROUP BY 1, 2, 3, 4, 5"""

# executions only: a cancelled step counts if it had started (pending -> cancelled never ran)
STEPS_AGG = f"""SELECT date_trunc('minute', s.finished_at) AS bucket, s.node_type, r.owner_id,
           s.status,
           CASE WHEN s.started_at IS NULL THEN -1 ELSE width_bucket(
               extract(epoch FROM s.finished_at - s.started_at)::float8, {_B}) END AS le,
           count(*) AS n,
           coalesce(sum(extract(epoch FROM s.finished_at - s.started_at)), 0)::float8 AS seconds,
           sum(greatest(s.attempt - 1, 0)) AS retries
    FROM steps s
    -- one index lookup per step (LIMIT keeps the planner from hashing the whole runs table)
    CROSS JOIN LATERAL (SELECT owner_id FROM runs WHERE id = s.run_id LIMIT 1) r
    WHERE s.finished_at >= %(lo)s AND s.finished_at < %(hi)s
      AND (s.status IN {sql_list(values(S.SUCCEEDED, S.FAILED))}
           OR (s.status = {sql_value(S.CANCELLED)} AND s.started_at IS NOT NULL))
    GROUP BY 1, 2, 3, 4, 5"""

ADVANCE_RUNS = f"""WITH agg AS ({RUNS_AGG}),
    minute AS (
        INSERT INTO metrics_runs_minute AS m (bucket, flow_id, owner_id, status, le, n, seconds)
        SELECT bucket, flow_id, owner_id, status, le, n, seconds FROM agg
        ON CONFLICT (bucket, flow_id, owner_id, status, le)
        DO UPDATE SET n = m.n + excluded.n, seconds = m.seconds + excluded.seconds),
    hour AS (
        INSERT INTO metrics_runs_hour AS h (bucket, flow_id, status, le, n, seconds)
        SELECT date_trunc('hour', bucket), flow_id, status, le, sum(n), sum(seconds) FROM agg
        GROUP BY 1, 2, 3, 4
        ON CONFLICT (bucket, flow_id, status, le)
        DO UPDATE SET n = h.n + excluded.n, seconds = h.seconds + excluded.seconds)
    INSERT INTO metrics_totals AS t (family, key1, key2, le, n, seconds)
    SELECT 'runs', status, flow_id::text, le, sum(n), sum(seconds) FROM agg GROUP BY 2, 3, 4
    ON CONFLICT (family, key1, key2, le)
    DO UPDATE SET n = t.n + excluded.n, seconds = t.seconds + excluded.seconds"""

# ADVANCE_STEPS mirrors ADVANCE_RUNS on its own tables and keys: one readable statement each.
ADVANCE_STEPS = f"""WITH agg AS ({STEPS_AGG}),
    minute AS (
        INSERT INTO metrics_steps_minute AS m
            (bucket, node_type, owner_id, status, le, n, seconds, retries)
        SELECT bucket, node_type, owner_id, status, le, n, seconds, retries FROM agg
        ON CONFLICT (bucket, node_type, owner_id, status, le)
        DO UPDATE SET n = m.n + excluded.n, seconds = m.seconds + excluded.seconds,
                      retries = m.retries + excluded.retries),
    hour AS (
        INSERT INTO metrics_steps_hour AS h (bucket, node_type, status, le, n, seconds)
        SELECT date_trunc('hour', bucket), node_type, status, le, sum(n), sum(seconds) FROM agg
        GROUP BY 1, 2, 3, 4
        ON CONFLICT (bucket, node_type, status, le)
        DO UPDATE SET n = h.n + excluded.n, seconds = h.seconds + excluded.seconds)
    INSERT INTO metrics_totals AS t (family, key1, key2, le, n, seconds, retries)
    SELECT 'steps', node_type, status, le, sum(n), sum(seconds), sum(retries) FROM agg
    GROUP BY 2, 3, 4
    ON CONFLICT (family, key1, key2, le)
    DO UPDATE SET n = t.n + excluded.n, seconds = t.seconds + excluded.seconds,
                  retries = t.retries + excluded.retries"""


async def advance(conn: Conn) -> bool:
    """Fold rows finished since the last call into the rollups; False if another process is
    doing it right now (or nothing is due). Uses its own transaction."""
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT upto, least(now() - make_interval(secs => %s),
                                  greatest(upto, (SELECT min(finished_at) FROM runs
                                                  WHERE finished_at IS NOT NULL))
                                  + make_interval(hours => %s)) AS hi
               FROM metrics_rollup_state WHERE id = 1 FOR UPDATE SKIP LOCKED""",
            (MARGIN_SECONDS, CATCH_UP_HOURS),
        )
        row = await cur.fetchone()
        if row is None or row["hi"] <= row["upto"]:
            return False
        params = {"lo": row["upto"], "hi": row["hi"]}
        await conn.execute(ADVANCE_RUNS, params)
        await conn.execute(ADVANCE_STEPS, params)
        await conn.execute("UPDATE metrics_rollup_state SET upto = %(hi)s WHERE id = 1", params)
    return True


async def watermark(conn: Conn) -> Any:
    cur = await conn.execute("SELECT upto FROM metrics_rollup_state WHERE id = 1")
    row = await cur.fetchone()
    return row["upto"] if row else None


def percentile(hist: dict[int, int], q: float) -> float:
    """The q-quantile of a histogram {le index: count} (le -1 ignored), interpolated linearly
    inside the bucket like histogram_quantile; the +Inf bucket answers its lower bound."""
    counts = sorted((le, n) for le, n in hist.items() if le >= 0 and n > 0)
    total = sum(n for _, n in counts)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for le, n in counts:
        if seen + n >= rank:
            lower = BOUNDS[le - 1] if le > 0 else 0.0
            if le >= len(BOUNDS):
                return BOUNDS[-1]
            return lower + (BOUNDS[le] - lower) * ((rank - seen) / n)
        seen += n
    return BOUNDS[-1]
