"""`flowstudio bench --scale`: the dashboard queries measured on a big seeded database.

`run_scale_bench(settings, args)` creates a throwaway database (`Sandbox`, no engine processes),
migrates it, seeds `--scale-runs` runs x `--steps` steps (`bench/scale_seed.py`), brings the metrics
rollup up to date (as the orchestrator keeps it), then times, with one pooled client like the API's,
the exact store functions the API calls: the run list (no filter, per owner, per flow, by status,
a time window, keyset pages 2-6), the run detail (run + steps), the event log, and the ops stats for
each window (admin and owner scope). Each case runs `--scale-reps` times (after 2 warm-ups, so
prepared statements reach their generic plan as in a long-lived API); p50/p95 in ms are printed
as a table, and with `--json` as one JSON object on the last line. The database is always dropped.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from flowstudio.bench.sandbox import Sandbox
from flowstudio.bench.scale_seed import seed
from flowstudio.runtime import run_async
from flowstudio.settings import Settings
from flowstudio.store import metrics_rollup, ops, runs
from flowstudio.store.db import open_pool
from flowstudio.store.migrate import apply_migrations

log = logging.getLogger(__name__)
WINDOWS = (15, 60, 360, 1440)
LIST_GOAL_MS = 50.0
OPS_GOAL_MS = 200.0


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _time(fn: Callable[[], Awaitable[Any]], reps: int) -> dict[str, float]:
    for _ in range(2):
        await fn()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(_pct(samples, 0.95), 2),
    }


async def _cases(conn: psycopg.AsyncConnection[Any]) -> dict[str, Callable[[], Awaitable[Any]]]:
    cur = await conn.execute("SELECT id, owner_id FROM flows ORDER BY id LIMIT 1")
    flow = await cur.fetchone()
    assert flow is not None
    cur = await conn.execute("SELECT id FROM runs ORDER BY random() LIMIT 200")
    run_ids = [r["id"] for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT created_at FROM runs ORDER BY created_at DESC OFFSET 5000 LIMIT 1"
    )
    window = await cur.fetchone()
    assert window is not None
    owner = str(flow["owner_id"])

    def listing(**kw: Any) -> Callable[[], Awaitable[Any]]:
        base: dict[str, Any] = {"owner_id": None, "flow_id": None, "status": None}
        return lambda: runs.list_runs(conn, **{**base, "limit": 50, "before": None, **kw})

    async def pages() -> None:
        before = None
        for _ in range(6):
            rows = await runs.list_runs(
                conn, owner_id=None, flow_id=None, status=None, limit=50, before=before
            )
            before = (rows[-1]["created_at"], rows[-1]["id"])

    async def detail() -> None:
        rid = random.choice(run_ids)
        await runs.get_run(conn, rid)
        await runs.get_steps(conn, rid)

    async def events() -> None:
        await runs.get_events(conn, random.choice(run_ids))

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "list: no filter": listing(),
        "list: owner": listing(owner_id=owner),
        "list: flow": listing(flow_id=flow["id"]),
        "list: status=failed": listing(status="failed"),
        "list: created_after": listing(created_after=window["created_at"]),
        "list: 6 keyset pages (per page)": pages,
        "run detail (run + steps)": detail,
        "event log": events,
    }
    for minutes in WINDOWS:
        bucket = max(60, minutes * 60 // 120)
        for scope, who in (("admin", None), ("owner", owner)):
            cases[f"ops stats {minutes} min ({scope})"] = (
                lambda m=minutes, b=bucket, w=who: ops.ops_snapshot(conn, w, m, b)  # type: ignore[misc]
            )
    return cases


async def scale_session(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    await apply_migrations(settings)
    pool = await open_pool(settings, max_size=2, name="fs-bench-scale")
    try:
        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            seeded = await seed(
                conn,
                runs=args.scale_runs,
                steps_per_run=args.steps,
                events_per_step=args.scale_events,
                days=args.scale_days,
            )
            started = time.monotonic()
            for _ in range(int(args.scale_days) + 3):  # a day of history per call
                await metrics_rollup.advance(conn)
            for table in ("metrics_runs_minute", "metrics_steps_minute", "metrics_runs_hour"):
                await conn.execute(f"ANALYZE {table}")  # as autovacuum would after the load
            await conn.execute("ANALYZE metrics_steps_hour")
            seeded["rollup"] = round(time.monotonic() - started, 1)
            cur = await conn.execute(
                """SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM steps) AS steps,
                          (SELECT count(*) FROM run_events) AS events"""
            )
            sizes = await cur.fetchone()
            cases = await _cases(conn)
            figures = {}
            for name, fn in cases.items():
                figures[name] = await _time(fn, args.scale_reps)
                if name.startswith("list: 6 keyset"):
                    figures[name] = {k: round(v / 6, 2) for k, v in figures[name].items()}
                log.info("%s: %s", name, figures[name])
    finally:
        await pool.close()
    return {"sizes": dict(sizes or {}), "seed_seconds": seeded, "figures": figures}


def _table(result: dict[str, Any]) -> str:
    sizes = result["sizes"]
    lines = [
        f"scale bench: {sizes['runs']:,} runs, {sizes['steps']:,} steps, "
        f"{sizes['events']:,} events (seeded in {sum(result['seed_seconds'].values()):.0f}s)",
        f"{'case':44} {'p50 ms':>9} {'p95 ms':>9}  goal",
    ]
    for name, fig in result["figures"].items():
        goal = OPS_GOAL_MS if name.startswith("ops") else LIST_GOAL_MS
        mark = "met" if fig["p95_ms"] <= goal else "MISSED"
        lines.append(f"{name:44} {fig['p50_ms']:9.2f} {fig['p95_ms']:9.2f}  <= {goal:g} {mark}")
    return "\n".join(lines)


def run_scale_bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.scale_runs < 100 or args.steps < 2 or args.scale_reps < 5:
        sys.stderr.write(
            "flowstudio: error: --scale-runs >= 100, --steps >= 2, --scale-reps >= 5\n"
        )
        return 2
    try:
        sandbox = Sandbox.create(settings)
    except psycopg.Error as exc:
        log.error("cannot create the bench database: %s", exc)
        return 1
    try:
        result = run_async(lambda: scale_session(sandbox.settings, args))
    except KeyboardInterrupt:
        log.warning("scale bench interrupted: dropping its database")
        return 130
    finally:
        sandbox.close()
    sys.stdout.write(_table(result) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0
