"""SQL behind the ops dashboard (`api/ops.py` calls `ops_snapshot`, which calls the others in turn).

Every query takes `owner_id` (None for admins: all runs) so non-admins only ever see their own runs;
`processes` (workers, orchestrators and their heartbeats) is infrastructure and not filtered. Durations
are `finished_at - started_at` of terminal rows inside the window; percentiles use
`percentile_cont`. Time buckets are computed with the database clock (`now()`).
"""

from __future__ import annotations

from typing import Any

import psycopg

OWNER = "(%(owner)s::uuid IS NULL OR r.owner_id = %(owner)s::uuid)"


async def runs_by_status(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None
) -> dict[str, int]:
    cur = await conn.execute(
        f"SELECT r.status, count(*) AS n FROM runs r WHERE {OWNER} GROUP BY r.status",
        {"owner": owner_id},
    )
    return {row["status"]: int(row["n"]) for row in await cur.fetchall()}


async def throughput(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None, minutes: int, bucket_s: int
) -> list[dict[str, Any]]:
    """Runs finished per bucket over the last `minutes`, split by final status; empty buckets kept."""
    cur = await conn.execute(
        f"""WITH buckets AS (
                SELECT generate_series(
                    to_timestamp(floor(extract(epoch FROM now() - make_interval(mins => %(m)s))
                                       / %(b)s) * %(b)s),
                    now(), make_interval(secs => %(b)s)) AS t)
            SELECT b.t AS at,
                   count(r.id) FILTER (WHERE r.status = 'succeeded') AS succeeded,
                   count(r.id) FILTER (WHERE r.status = 'failed') AS failed,
                   count(r.id) FILTER (WHERE r.status = 'cancelled') AS cancelled
            FROM buckets b
            LEFT JOIN runs r ON r.finished_at >= b.t
                 AND r.finished_at < b.t + make_interval(secs => %(b)s) AND {OWNER}
            GROUP BY b.t ORDER BY b.t""",
        {"owner": owner_id, "m": minutes, "b": bucket_s},
    )
    return [
        {
            "at": row["at"].isoformat(),
            "succeeded": int(row["succeeded"]),
            "failed": int(row["failed"]),
            "cancelled": int(row["cancelled"]),
        }
        for row in await cur.fetchall()
    ]


async def flow_durations(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None, hours: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT r.flow_id, coalesce(max(f.name), '(deleted flow)') AS name, count(*) AS runs,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY
                       extract(epoch FROM r.finished_at - r.started_at)) AS p50_s,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY
                       extract(epoch FROM r.finished_at - r.started_at)) AS p95_s
            FROM runs r LEFT JOIN flows f ON f.id = r.flow_id
            WHERE {OWNER} AND r.finished_at > now() - make_interval(hours => %(h)s)
              AND r.started_at IS NOT NULL
            GROUP BY r.flow_id ORDER BY count(*) DESC LIMIT 20""",
        {"owner": owner_id, "h": hours},
    )
    return [
        {
            "flow_id": str(row["flow_id"]),
            "name": row["name"],
            "runs": int(row["runs"]),
            "p50_s": float(row["p50_s"] or 0),
            "p95_s": float(row["p95_s"] or 0),
        }
        for row in await cur.fetchall()
    ]


async def node_durations(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None, hours: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT s.node_type, count(*) AS steps,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY
                       extract(epoch FROM s.finished_at - s.started_at)) AS p50_s,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY
                       extract(epoch FROM s.finished_at - s.started_at)) AS p95_s
            FROM steps s JOIN runs r ON r.id = s.run_id
            WHERE {OWNER} AND s.finished_at > now() - make_interval(hours => %(h)s)
              AND s.started_at IS NOT NULL
            GROUP BY s.node_type ORDER BY count(*) DESC LIMIT 30""",
        {"owner": owner_id, "h": hours},
    )
    return [
        {
            "node_type": row["node_type"],
            "steps": int(row["steps"]),
            "p50_s": float(row["p50_s"] or 0),
            "p95_s": float(row["p95_s"] or 0),
        }
        for row in await cur.fetchall()
    ]


async def failing_nodes(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None, hours: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT r.flow_id, coalesce(max(f.name), '(deleted flow)') AS flow_name, s.node_id,
                   max(s.node_type) AS node_type, count(*) AS failures,
                   max(s.finished_at) AS last_at,
                   (array_agg(s.error->>'message' ORDER BY s.finished_at DESC))[1] AS last_error
            FROM steps s JOIN runs r ON r.id = s.run_id LEFT JOIN flows f ON f.id = r.flow_id
            WHERE {OWNER} AND s.status = 'failed'
              AND s.finished_at > now() - make_interval(hours => %(h)s)
            GROUP BY r.flow_id, s.node_id ORDER BY count(*) DESC, max(s.finished_at) DESC
            LIMIT 10""",
        {"owner": owner_id, "h": hours},
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
    """Live work in PostgreSQL: steps not yet terminal, by state (the durable 'queue')."""
    cur = await conn.execute(
        f"""SELECT s.status, count(*) AS n FROM steps s JOIN runs r ON r.id = s.run_id
            WHERE {OWNER} AND s.status IN ('ready', 'running', 'retrying', 'waiting')
            GROUP BY s.status""",
        {"owner": owner_id},
    )
    return {row["status"]: int(row["n"]) for row in await cur.fetchall()}


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
    hours = max(1, (minutes + 59) // 60)
    return {
        "runs_by_status": await runs_by_status(conn, owner_id),
        "throughput": await throughput(conn, owner_id, minutes, bucket_s),
        "flow_durations": await flow_durations(conn, owner_id, hours),
        "node_durations": await node_durations(conn, owner_id, hours),
        "failing_nodes": await failing_nodes(conn, owner_id, hours),
        "steps_by_status": await steps_by_status(conn, owner_id),
        "processes": await processes(conn),
    }
