"""The database-backed collector behind `GET /metrics`: what PostgreSQL already knows, read cheaply.

`DatabaseMetrics.refresh()` (awaited by the /metrics handler) recomputes at most once per
`METRICS_CACHE_SECONDS`; concurrent scrapers wait for the one computation in flight and share it,
so N Prometheus replicas cost one query set. A refresh first advances the rollups
(`store.metrics_rollup.advance`, a few seconds of rows), then reads: the cumulative totals
(`metrics_totals`: runs and step executions by status, duration histograms, retries), live runs and
steps by state (partial indexes), live processes per kind and live workers (heartbeat within
LEASE_SECONDS), outbox size and lag, timers due, the persisted counters of other processes
(`metrics_counters`: LLM calls/tokens/429s, lease expiries...), the pool gauges that workers and
orchestrators report in their heartbeat (`processes.info.pool`), the broker's queue depth, and per
LLM provider its permits in use, effective concurrency, parked steps and 429s (`store.providers`).
`collect()` (called by prometheus-client while rendering) only turns that snapshot into metric
families; it never does I/O. Counters come from monotonic sums, so they never go down.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from flowstudio.observability.counters import HELP
from flowstudio.store import metrics_rollup, ops
from flowstudio.store.providers import METRICS_SQL as PROVIDERS_SQL
from flowstudio.store.statuses import RUN_ENDED

log = logging.getLogger(__name__)

SNAPSHOT_SQL = {
    "totals": "SELECT family, key1, key2, le, n, seconds, retries FROM metrics_totals",
    "live_runs": ops.LIVE_RUNS_BY_STATUS,
    "live_steps": ops.LIVE_STEPS_BY_STATUS,
    "timers": ops.DUE_TIMERS,
    "outbox": """SELECT count(*) AS n,
                        coalesce(extract(epoch FROM now() - min(created_at)), 0) AS lag FROM outbox""",
    "processes": """SELECT kind, count(*) AS n,
                           coalesce(sum((info->'pool'->>'size')::int), 0) AS pool_size,
                           coalesce(sum((info->'pool'->>'available')::int), 0) AS pool_available,
                           coalesce(sum((info->'pool'->>'waiting')::int), 0) AS pool_waiting,
                           coalesce(sum((info->'pool'->>'max')::int), 0) AS pool_max
                    FROM processes
                    WHERE heartbeat_at > now() - make_interval(secs => %(lease)s) GROUP BY kind""",
    "counters": "SELECT family, labels, value FROM metrics_counters",
    "providers": PROVIDERS_SQL,
}


class DatabaseMetrics:
    def __init__(self, pool: Any, broker: Any, lease_seconds: float, cache_seconds: float) -> None:
        self.pool = pool
        self.broker = broker
        self.lease_seconds = lease_seconds
        self.cache_seconds = cache_seconds
        self.snapshot: dict[str, Any] | None = None
        self.taken_at = 0.0
        self.lock = anyio.Lock()
        self.refreshes = 0  # query sets run (exposed: scrapers share one per cache interval)
        self.database_up = True  # set by the /metrics handler after each refresh attempt

    async def refresh(self) -> None:
        if self.snapshot is not None and time.monotonic() - self.taken_at < self.cache_seconds:
            return
        async with self.lock:  # the others wait here and then find it fresh
            if self.snapshot is not None and time.monotonic() - self.taken_at < self.cache_seconds:
                return
            snap: dict[str, Any] = {}
            started = time.perf_counter()
            async with self.pool.connection() as conn:
                await metrics_rollup.advance(conn)
                for name, sql in SNAPSHOT_SQL.items():
                    cur = await conn.execute(sql, {"lease": self.lease_seconds})
                    snap[name] = await cur.fetchall()
            try:
                with anyio.fail_after(3):
                    snap["broker_depth"] = await self.broker.queue_depth()
            except Exception as exc:  # the scrape must work with the broker down
                log.debug("broker queue depth unavailable: %s", exc)
                snap["broker_depth"] = None
            self.refreshes += 1
            snap["collection_seconds"] = time.perf_counter() - started
            self.snapshot = snap
            self.taken_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        yield from _totals(snap["totals"])
        yield from _live(snap)
        yield from _processes(snap["processes"])
        yield from _counters(snap["counters"])
        yield from _providers(snap["providers"])
        yield CounterMetricFamily(
            "flowstudio_metrics_collections",
            "Database query sets run for /metrics by this API process (one per cache interval)",
            value=self.refreshes,
        )
        yield GaugeMetricFamily(
            "flowstudio_metrics_database_up",
            "1 if the last collection reached PostgreSQL; 0: the values are from an older one",
            value=1 if self.database_up else 0,
        )
        yield GaugeMetricFamily(
            "flowstudio_metrics_collection_seconds",
            "How long the last database query set for /metrics took",
            value=snap["collection_seconds"],
        )


def _hist_buckets(hist: dict[int, int]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets from {le index: count} (le -1 = no duration, left out)."""
    out, running = [], 0
    for i, bound in enumerate(metrics_rollup.BOUNDS):
        running += hist.get(i, 0)
        out.append((repr(bound), float(running)))
    running += hist.get(len(metrics_rollup.BOUNDS), 0)
    out.append(("+Inf", float(running)))
    return out


def _totals(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "flowstudio_runs_total", "Runs that reached a terminal status", labels=["status"]
    )
    steps = CounterMetricFamily(
        "flowstudio_steps_total",
        "Step executions that reached a terminal status",
        labels=["node_type", "status"],
    )
    retries = CounterMetricFamily(
        "flowstudio_step_retries_total",
        "Attempts beyond the first of finished steps (retries and lease recoveries)",
        labels=["node_type"],
    )
    step_dur = HistogramMetricFamily(
        "flowstudio_step_duration_seconds",
        "Step execution time (started to finished), finished steps",
        labels=["node_type"],
    )
    run_dur = HistogramMetricFamily(
        "flowstudio_run_duration_seconds",
        "Run duration (started to finished) per flow, terminal runs",
        labels=["flow_id"],
    )
    run_counts: dict[str, float] = dict.fromkeys(RUN_ENDED, 0.0)
    step_counts: dict[tuple[str, str], float] = {}
    retry_counts: dict[str, float] = {}
    step_hist: dict[str, dict[int, int]] = {}
    step_sum: dict[str, float] = {}
    flow_hist: dict[str, dict[int, int]] = {}
    flow_sum: dict[str, float] = {}
    for r in rows:
        n, le = int(r["n"]), int(r["le"])
        if r["family"] == "runs":
            run_counts[r["key1"]] = run_counts.get(r["key1"], 0.0) + n
            hist, sums, key = flow_hist, flow_sum, r["key2"]
        else:
            step_counts[(r["key1"], r["key2"])] = step_counts.get((r["key1"], r["key2"]), 0.0) + n
            retry_counts[r["key1"]] = retry_counts.get(r["key1"], 0.0) + int(r["retries"])
            hist, sums, key = step_hist, step_sum, r["key1"]
        if le >= 0:
            h = hist.setdefault(key, {})
            h[le] = h.get(le, 0) + n
            sums[key] = sums.get(key, 0.0) + float(r["seconds"])
    for status, count in sorted(run_counts.items()):
        runs.add_metric([status], count)
    for (node_type, status), count in sorted(step_counts.items()):
        steps.add_metric([node_type, status], count)
    for node_type, count in sorted(retry_counts.items()):
        retries.add_metric([node_type], count)
    for node_type, h in sorted(step_hist.items()):
        step_dur.add_metric([node_type], _hist_buckets(h), step_sum[node_type])
    for flow_id, h in sorted(flow_hist.items()):
        run_dur.add_metric([flow_id], _hist_buckets(h), flow_sum[flow_id])
    yield from (runs, steps, retries, step_dur, run_dur)


def _live(snap: dict[str, Any]) -> Iterator[Metric]:
    live_runs = GaugeMetricFamily(
        "flowstudio_runs_live", "Runs not yet terminal", labels=["status"]
    )
    counts = {r["status"]: int(r["n"]) for r in snap["live_runs"]}
    for status in ("queued", "running", "waiting"):
        live_runs.add_metric([status], counts.get(status, 0))
    live_steps = GaugeMetricFamily(
        "flowstudio_steps_live", "Steps in a live state", labels=["status"]
    )
    counts = {r["status"]: int(r["n"]) for r in snap["live_steps"]}
    for status in ("ready", "running", "retrying", "waiting"):
        live_steps.add_metric([status], counts.get(status, 0))
    outbox = snap["outbox"][0]
    depth = GaugeMetricFamily(
        "flowstudio_queue_depth",
        "Work waiting: ready steps in PostgreSQL, unpublished outbox rows, broker messages",
        labels=["queue"],
    )
    depth.add_metric(["ready"], counts.get("ready", 0))
    depth.add_metric(["outbox"], int(outbox["n"]))
    if snap["broker_depth"] is not None:
        depth.add_metric(["broker"], int(snap["broker_depth"]))
    yield from (live_runs, live_steps, depth)
    yield GaugeMetricFamily(
        "flowstudio_outbox_lag_seconds",
        "Age of the oldest unpublished outbox row (0 when empty)",
        value=float(outbox["lag"]),
    )
    yield GaugeMetricFamily(
        "flowstudio_timers_due",
        "Retry backoffs and waits whose due time has passed but that have not fired yet",
        value=int(snap["timers"][0]["n"]),
    )


def _processes(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    by_kind = {r["kind"]: r for r in rows}
    yield GaugeMetricFamily(
        "flowstudio_workers",
        "Live worker processes (heartbeat within the lease)",
        value=int(by_kind["worker"]["n"]) if "worker" in by_kind else 0,
    )
    procs = GaugeMetricFamily(
        "flowstudio_processes",
        "Live processes by kind (heartbeat within the lease)",
        labels=["kind"],
    )
    pool = GaugeMetricFamily(
        "flowstudio_db_pool_connections",
        "PostgreSQL pool connections of workers and orchestrators, summed per process kind",
        labels=["process_kind", "state"],
    )
    for kind, r in sorted(by_kind.items()):
        procs.add_metric([kind], int(r["n"]))
        in_use = int(r["pool_size"]) - int(r["pool_available"])
        for state, value in (
            ("in_use", in_use),
            ("idle", int(r["pool_available"])),
            ("max", int(r["pool_max"])),
            ("waiting_requests", int(r["pool_waiting"])),
        ):
            pool.add_metric([kind, state], value)
    yield from (procs, pool)


def _counters(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    for r in rows:
        families.setdefault(r["family"], []).append((json.loads(r["labels"]), float(r["value"])))
    for family, samples in sorted(families.items()):
        names = sorted({k for labels, _ in samples for k in labels})
        metric = CounterMetricFamily(family, HELP.get(family, family), labels=names)
        for labels, value in samples:
            metric.add_metric([labels.get(k, "") for k in names], value)
        yield metric


def _providers(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    labels = ["provider_id", "host"]
    in_flight = GaugeMetricFamily(
        "flowstudio_provider_in_flight",
        "LLM provider permits in use (calls in flight)",
        labels=labels,
    )
    effective = GaugeMetricFamily(
        "flowstudio_provider_effective_concurrency",
        "A provider's adaptive concurrency limit (AIMD on 429s, up to max_concurrency)",
        labels=labels,
    )
    parked = GaugeMetricFamily(
        "flowstudio_provider_parked_steps",
        "Steps parked durably until the provider has capacity (or a Retry-After passed)",
        labels=labels,
    )
    throttled = CounterMetricFamily(
        "flowstudio_provider_throttled",
        "429 answers of a provider (each parks its step for the Retry-After)",
        labels=labels,
    )
    for r in rows:
        key = [str(r["id"]), urlsplit(r["base_url"]).netloc or r["base_url"]]
        in_flight.add_metric(key, int(r["in_flight"]))
        effective.add_metric(key, int(r["effective_concurrency"]))
        parked.add_metric(key, int(r["parked"]))
        throttled.add_metric(key, int(r["throttled_total"]))
    yield from (in_flight, effective, parked, throttled)
