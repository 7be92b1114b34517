"""SQL behind the ops dashboard (`api/ops.py` calls `ops_snapshot`, which calls the others in turn).

Everything that grows with history is read from the metrics rollups (`store/metrics_rollup.py`):
the window's whole minutes from `metrics_runs_minute` / `metrics_steps_minute` plus the live tail
since the watermark, aggregated in SQL (by status and by flow/duration bucket in one GROUPING SETS
statement; by time bucket; by node type/duration bucket) so only a few hundred rows reach Python.
Admin windows over HOURLY_AFTER_MINUTES read whole hours from `metrics_*_hour` (no owner column,
~60x fewer rows) and only the first partial hour from the minute tables; owner windows use the
minute tables' covering (owner_id, bucket) indexes. Only small sets are read raw: live runs and
steps (partial indexes over live states), failed steps in the window (partial index, one run lookup
per step), processes, and throughput buckets finer than a minute (a range scan of `runs_finished`).
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

from flowstudio.store import metrics_rollup as rollup
from flowstudio.store.db import Conn
from flowstudio.store.statuses import (
    RUN_ENDED_SQL,
    RUN_LIVE_SQL,
    STEP_ACTIVE_SQL,
    STEP_DUE_SQL,
    StepStatus,
    sql_value,
)

FAILED = sql_value(StepStatus.FAILED)
READY, RUNNING = sql_value(StepStatus.READY), sql_value(StepStatus.RUNNING)
# Live runs by status, through the partial index `runs_live` (the ops page and GET /metrics).
LIVE_RUNS_BY_STATUS = f"""SELECT status, count(*) AS n FROM runs
    WHERE status IN {RUN_LIVE_SQL} GROUP BY status"""
# Live steps by status: each arm of the UNION is served by its state's partial index.
LIVE_STEPS_BY_STATUS = f"""SELECT {READY} AS status, count(*) AS n FROM steps s
        WHERE s.status = {READY}
    UNION ALL SELECT {RUNNING}, count(*) FROM steps s WHERE s.status = {RUNNING}
    UNION ALL SELECT s.status, count(*) FROM steps s
        WHERE s.status IN {STEP_DUE_SQL} GROUP BY s.status"""
# Timers that are due now (steps_due).
DUE_TIMERS = f"SELECT count(*) AS n FROM steps WHERE status IN {STEP_DUE_SQL} AND due_at <= now()"


def _owner(owner_id: str | None, column: str = "owner_id") -> str:
    return "" if owner_id is None else f" AND {column} = %(owner)s::uuid"


def _tail(agg: str, owner_id: str | None) -> str:
    """The rollup's aggregation over [watermark, now]: rows not folded into it yet."""
    tail = agg.replace("%(lo)s", "%(upto)s").replace("%(hi)s", "now() + interval '1 hour'")
    return f"SELECT * FROM ({tail}) t WHERE true{_owner(owner_id)}"


HOURLY_AFTER_MINUTES = 120  # admin windows longer than this read whole hours from *_hour


def _source(kind: str, cols: str, owner_id: str | None, hourly: bool) -> str:
    """The window's rows: minute rollup (+ hour rollup for whole hours) + the live tail."""
    agg = rollup.RUNS_AGG if kind == "runs" else rollup.STEPS_AGG
    tail = f"SELECT {cols} FROM ({_tail(agg, owner_id)}) t"
    if not hourly:
        minute = f"SELECT {cols} FROM metrics_{kind}_minute WHERE bucket >= %(start)s"
        return f"{minute}{_owner(owner_id)} UNION ALL {tail}"
    minute = (
        f"SELECT {cols} FROM metrics_{kind}_minute"
        " WHERE bucket >= %(start)s AND bucket < %(hour)s"
    )
    hour = f"SELECT {cols} FROM metrics_{kind}_hour WHERE bucket >= %(hour)s"
    return f"{minute} UNION ALL {hour} UNION ALL {tail}"


# The window_* readers share one signature (conn, owner, start, upto, ...) on purpose: one window.
async def window_runs(
    conn: Conn, owner_id: str | None, start: datetime, upto: Any, hourly: bool
) -> tuple[dict[str, int], dict[Any, dict[int, int]]]:
    """(terminal runs by status, duration histogram per flow) in one statement."""
    sql = f"""WITH w AS ({_source("runs", "flow_id, status, le, n", owner_id, hourly)})
        SELECT status, flow_id, le, sum(n) AS n FROM w
        GROUP BY GROUPING SETS ((status), (flow_id, le))"""
    cur = await conn.execute(
        sql,  # type: ignore[arg-type]
        _params(owner_id, start, upto),
        prepare=False,  # custom plans: a generic plan guesses a third of the table for `>=`
    )
    by_status: dict[str, int] = {}
    hists: dict[Any, dict[int, int]] = {}
    for row in await cur.fetchall():
        if row["flow_id"] is not None:
            hists.setdefault(row["flow_id"], {})[int(row["le"])] = int(row["n"])
        else:
            by_status[row["status"]] = int(row["n"])
    return by_status, hists


async def window_throughput(
    conn: Conn, owner_id: str | None, start: datetime, upto: Any, bucket_s: int
) -> dict[datetime, dict[str, int]]:
    """Terminal runs per time bucket (a multiple of the rollup's minute)."""
    sql = f"""WITH w AS ({_source("runs", "bucket, status, n", owner_id, False)})
        SELECT to_timestamp(floor(extract(epoch FROM bucket) / %(b)s) * %(b)s) AS tb, status,
               sum(n) AS n
        FROM w GROUP BY 1, 2"""
    cur = await conn.execute(
        sql,  # type: ignore[arg-type]
        {**_params(owner_id, start, upto), "b": bucket_s},
        prepare=False,
    )
    out: dict[datetime, dict[str, int]] = {}
    for row in await cur.fetchall():
        out.setdefault(row["tb"], {})[row["status"]] = int(row["n"])
    return out


async def window_steps(
    conn: Conn, owner_id: str | None, start: datetime, upto: Any, hourly: bool
) -> dict[Any, dict[int, int]]:
    sql = f"""WITH w AS ({_source("steps", "node_type, le, n", owner_id, hourly)})
        SELECT node_type, le, sum(n) AS n FROM w GROUP BY node_type, le"""
    cur = await conn.execute(
        sql, _params(owner_id, start, upto), prepare=False  # type: ignore[arg-type]
    )
    hists: dict[Any, dict[int, int]] = {}
    for row in await cur.fetchall():
        hists.setdefault(row["node_type"], {})[int(row["le"])] = int(row["n"])
    return hists


def _params(owner_id: str | None, start: datetime, upto: Any) -> dict[str, Any]:
    hour = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return {"start": start, "hour": hour, "upto": upto, "owner": owner_id}


async def live_runs_by_status(conn: Conn, owner_id: str | None) -> dict[str, int]:
    cur = await conn.execute(
        f"""SELECT status, count(*) AS n FROM runs
            WHERE status IN {RUN_LIVE_SQL}{_owner(owner_id)} GROUP BY status""",
        {"owner": owner_id},
    )
    return {row["status"]: int(row["n"]) for row in await cur.fetchall()}


async def fine_throughput(
    conn: Conn, owner_id: str | None, start: datetime, bucket_s: int
) -> dict[datetime, dict[str, int]]:
    """Buckets finer than the rollup's minute: one range scan over the window's finished runs."""
    cur = await conn.execute(
        f"""SELECT to_timestamp(floor(extract(epoch FROM finished_at) / %(b)s) * %(b)s) AS t,
                   status, count(*) AS n
            FROM runs WHERE finished_at >= %(start)s
              AND status IN {RUN_ENDED_SQL}{_owner(owner_id)}
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


async def flow_names(conn: Conn, ids: list[Any]) -> dict[str, str]:
    if not ids:
        return {}
    cur = await conn.execute("SELECT id, name FROM flows WHERE id = ANY(%s)", (ids,))
    return {str(r["id"]): r["name"] for r in await cur.fetchall()}


async def failing_nodes(conn: Conn, owner_id: str | None, start: datetime) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT r.flow_id, coalesce(max(f.name), '(deleted flow)') AS flow_name, s.node_id,
                   max(s.node_type) AS node_type, count(*) AS failures,
                   max(s.finished_at) AS last_at,
                   (array_agg(s.error->>'message' ORDER BY s.finished_at DESC))[1] AS last_error
            FROM steps s
            CROSS JOIN LATERAL (  -- an index lookup per failed step, never a hash of all runs
                SELECT flow_id, owner_id FROM runs WHERE id = s.run_id LIMIT 1) r
            LEFT JOIN flows f ON f.id = r.flow_id
            WHERE s.status = {FAILED} AND s.finished_at >= %(start)s{_owner(owner_id, "r.owner_id")}
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


async def steps_by_status(conn: Conn, owner_id: str | None) -> dict[str, int]:
    """Live work in PostgreSQL: steps not yet terminal, by state (the durable 'queue'). Admins:
    each arm of the UNION is served by its state's partial index. An owner: the steps of their
    live runs (live steps only exist in live runs), found through `runs_live`."""
    if owner_id is None:
        sql = LIVE_STEPS_BY_STATUS
    else:
        sql = f"""SELECT s.status, count(*) AS n FROM runs r JOIN steps s ON s.run_id = r.id
            WHERE r.status IN {RUN_LIVE_SQL} AND r.owner_id = %(owner)s
              AND s.status IN {STEP_ACTIVE_SQL}
            GROUP BY s.status"""
    cur = await conn.execute(sql, {"owner": owner_id})
    return {row["status"]: int(row["n"]) for row in await cur.fetchall() if row["n"]}


async def processes(conn: Conn) -> list[dict[str, Any]]:
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
    conn: Conn, owner_id: str | None, minutes: int, bucket_s: int
) -> dict[str, Any]:
    cur = await conn.execute("SELECT now() AS now")
    now = (await cur.fetchone())["now"]  # type: ignore[index]
    start = now - timedelta(minutes=minutes)
    upto = await rollup.watermark(conn)
    minute_start = _bucket_start(start, 60)
    hourly = owner_id is None and minutes > HOURLY_AFTER_MINUTES
    finished, flow_hists = await window_runs(conn, owner_id, minute_start, upto, hourly)
    by_status = await live_runs_by_status(conn, owner_id)
    for status, n in finished.items():
        by_status[status] = by_status.get(status, 0) + n
    if bucket_s % 60 == 0:
        buckets = await window_throughput(conn, owner_id, minute_start, upto, bucket_s)
    else:  # finer than the rollup's minute: read the window's runs
        buckets = await fine_throughput(conn, owner_id, start, bucket_s)
    flows = _durations(flow_hists)
    top_flows = sorted(flows.items(), key=lambda kv: -kv[1][0])[:20]
    names = await flow_names(conn, [k for k, _ in top_flows])
    nodes = _durations(await window_steps(conn, owner_id, minute_start, upto, hourly))
    return {
        "runs_by_status": by_status,
        "throughput": throughput_from(buckets, start, now, bucket_s),
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
