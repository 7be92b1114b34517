"""SQL behind the ops dashboard (`api/ops.py` calls `ops_snapshot`, which calls the others in turn).

Everything that grows with history is read from the metrics rollups (`store/metrics_rollup.py`):
the window's whole minutes from `metrics_runs_minute` / `metrics_steps_minute` plus the live tail
since the watermark, merged in Python, so a 24 h window on a database of millions of rows reads a
few thousand rollup rows instead of every run and step. Only small sets are read raw: live runs and
steps (partial indexes over live states), failed steps in the window (partial index), processes, and
throughput buckets finer than a minute (one range scan over `runs_finished`).
Scoping: `owner_id` None means every run (admins); otherwise only that owner's runs. `processes`
(workers, orchestrators and their heartbeats) is infrastructure and not filtered. Durations are
`finished_at - started_at`; percentiles come from the duration histograms (bucket-interpolated, as
Prometheus' histogram_quantile). Terminal counts in `runs_by_status` are the runs that finished in
the window; live states are counted now. Every WHERE is built from the filters given (no
`(%s IS NULL OR ...)` catch-alls, which defeat generic plans).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from flowstudio.store import metrics_rollup as rollup

LIVE_RUNS = ("queued", "running", "waiting")


def _owner(owner_id: str | None, column: str = "owner_id") -> str:
    return "" if owner_id is None else f" AND {column} = %(owner)s::uuid"


async def _window_rows(
    conn: psycopg.AsyncConnection[Any], table: str, owner_id: str | None, start: datetime
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT * FROM {table} WHERE bucket >= %(start)s{_owner(owner_id)}",
        {"start": start, "owner": owner_id},
    )
    return await cur.fetchall()


def _scoped(rows: list[dict[str, Any]], owner_id: str | None) -> list[dict[str, Any]]:
    return rows if owner_id is None else [r for r in rows if str(r["owner_id"]) == owner_id]


async def live_runs_by_status(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None
) -> dict[str, int]:
    cur = await conn.execute(
        f"""SELECT status, count(*) AS n FROM runs
            WHERE status IN ('queued', 'running', 'waiting'){_owner(owner_id)} GROUP BY status""",
        {"owner": owner_id},
    )
    return {row["status"]: int(row["n"]) for row in await cur.fetchall()}


async def fine_throughput(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None, start: datetime, bucket_s: int
) -> dict[datetime, dict[str, int]]:
    """Buckets finer than the rollup's minute: one range scan over the window's finished runs."""
    cur = await conn.execute(
        f"""SELECT to_timestamp(floor(extract(epoch FROM finished_at) / %(b)s) * %(b)s) AS t,
                   status, count(*) AS n
            FROM runs WHERE finished_at >= %(start)s
              AND status IN ('succeeded', 'failed', 'cancelled'){_owner(owner_id)}
            GROUP BY 1, 2""",
        {"owner": owner_id, "start": start, "b": bucket_s},
    )
    out: dict[datetime, dict[str, int]] = {}
    for row in await cur.fetchall():
        out.setdefault(row["t"], {})[row["status"]] = int(row["n"])
    return out


def _bucket_start(at: datetime, bucket_s: int) -> datetime:
    epoch = at.timestamp()
    return datetime.fromtimestamp(epoch - epoch % bucket_s, tz=timezone.utc)


def throughput_from(
    counts: dict[datetime, dict[str, int]], start: datetime, now: datetime, bucket_s: int
) -> list[dict[str, Any]]:
    """Every bucket from `start` to `now`, empty ones kept."""
    out = []
    t = _bucket_start(start, bucket_s)
    while t <= now:
        c = counts.get(t, {})
        out.append(
            {
                "at": t.isoformat(),
                "succeeded": c.get("succeeded", 0),
                "failed": c.get("failed", 0),
                "cancelled": c.get("cancelled", 0),
            }
        )
        t += timedelta(seconds=bucket_s)
    return out


def _durations(hists: dict[Any, dict[int, int]]) -> dict[Any, tuple[int, float, float]]:
    return {
        key: (
            sum(n for n in h.values()),
            rollup.percentile(h, 0.5),
            rollup.percentile(h, 0.95),
        )
        for key, h in hists.items()
    }


async def flow_names(conn: psycopg.AsyncConnection[Any], ids: list[Any]) -> dict[str, str]:
    if not ids:
        return {}
    cur = await conn.execute("SELECT id, name FROM flows WHERE id = ANY(%s)", (ids,))
    return {str(r["id"]): r["name"] for r in await cur.fetchall()}


async def failing_nodes(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None, start: datetime
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT r.flow_id, coalesce(max(f.name), '(deleted flow)') AS flow_name, s.node_id,
                   max(s.node_type) AS node_type, count(*) AS failures,
                   max(s.finished_at) AS last_at,
                   (array_agg(s.error->>'message' ORDER BY s.finished_at DESC))[1] AS last_error
            FROM steps s JOIN runs r ON r.id = s.run_id LEFT JOIN flows f ON f.id = r.flow_id
            WHERE s.status = 'failed' AND s.finished_at >= %(start)s{_owner(owner_id, "r.owner_id")}
            GROUP BY r.flow_id, s.node_id ORDER BY count(*) DESC, max(s.finished_at) DESC
            LIMIT 10""",
        {"owner": owner_id, "start": start},
    )
    return [
        {
            "flow_id": str(row["flow_id"]),
            "flow_name": row["flow_name"],
            "node_id": row["node_id"],
            "node_type": row["node_type"],
            "failures": int(row["failures"]),
            "last_at": row["last_at"].isoformat() if row["last_at"] else None,
            "last_error": row["last_error"],
        }
        for row in await cur.fetchall()
    ]


async def steps_by_status(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None
) -> dict[str, int]:
    """Live work in PostgreSQL: steps not yet terminal, by state (the durable 'queue'); each arm
    of the UNION is served by its state's partial index."""
    join = "" if owner_id is None else " JOIN runs r ON r.id = s.run_id AND r.owner_id = %(owner)s"
    arms = [
        f"SELECT 'ready' AS status, count(*) AS n FROM steps s{join} WHERE s.status = 'ready'",
        f"SELECT 'running', count(*) FROM steps s{join} WHERE s.status = 'running'",
        f"SELECT s.status, count(*) FROM steps s{join}"
        " WHERE s.status IN ('retrying', 'waiting') GROUP BY s.status",
    ]
    cur = await conn.execute(" UNION ALL ".join(arms), {"owner": owner_id})
    return {row["status"]: int(row["n"]) for row in await cur.fetchall() if row["n"]}


async def processes(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute("""SELECT id, kind, hostname, pid, started_at, heartbeat_at, info,
                  extract(epoch FROM now() - heartbeat_at) AS heartbeat_age_s
           FROM processes ORDER BY kind, started_at""")
    return [
        {
            "id": row["id"],
            "kind": row["kind"],
            "hostname": row["hostname"],
            "pid": int(row["pid"]),
            "started_at": row["started_at"].isoformat(),
            "heartbeat_at": row["heartbeat_at"].isoformat(),
            "heartbeat_age_s": float(row["heartbeat_age_s"]),
            "info": row["info"] or {},
        }
        for row in await cur.fetchall()
    ]


async def ops_snapshot(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None, minutes: int, bucket_s: int
) -> dict[str, Any]:
    cur = await conn.execute("SELECT now() AS now")
    now = (await cur.fetchone())["now"]  # type: ignore[index]
    start = now - timedelta(minutes=minutes)
    minute_start = _bucket_start(start, 60)
    upto = await rollup.watermark(conn)
    runs = await _window_rows(conn, "metrics_runs_minute", owner_id, minute_start)
    runs += _scoped(await rollup.tail_runs(conn, upto), owner_id)
    steps = await _window_rows(conn, "metrics_steps_minute", owner_id, minute_start)
    steps += _scoped(await rollup.tail_steps(conn, upto), owner_id)

    by_status = await live_runs_by_status(conn, owner_id)
    for row in runs:
        by_status[row["status"]] = by_status.get(row["status"], 0) + int(row["n"])
    if bucket_s % 60 == 0:
        counts: dict[datetime, dict[str, int]] = {}
        for row in runs:
            c = counts.setdefault(_bucket_start(row["bucket"], bucket_s), {})
            c[row["status"]] = c.get(row["status"], 0) + int(row["n"])
        series = throughput_from(counts, start, now, bucket_s)
    else:
        series = throughput_from(
            await fine_throughput(conn, owner_id, start, bucket_s), start, now, bucket_s
        )

    flows = _durations(rollup.merge_hist(runs, "flow_id"))
    top_flows = sorted(flows.items(), key=lambda kv: -kv[1][0])[:20]
    names = await flow_names(conn, [k for k, _ in top_flows])
    nodes = _durations(rollup.merge_hist(steps, "node_type"))
    return {
        "runs_by_status": by_status,
        "throughput": series,
        "flow_durations": [
            {
                "flow_id": str(k),
                "name": names.get(str(k), "(deleted flow)"),
                "runs": n,
                "p50_s": p50,
                "p95_s": p95,
            }
            for k, (n, p50, p95) in top_flows
        ],
        "node_durations": [
            {"node_type": k, "steps": n, "p50_s": p50, "p95_s": p95}
            for k, (n, p50, p95) in sorted(nodes.items(), key=lambda kv: -kv[1][0])[:30]
        ],
        "failing_nodes": await failing_nodes(conn, owner_id, start),
        "steps_by_status": await steps_by_status(conn, owner_id),
        "processes": await processes(conn),
    }
