"""Ops dashboard data: `GET /api/v1/ops/stats` (permission ops:read).

`ops_stats` checks the permission and the window, reads one snapshot from `store.ops.ops_snapshot`
(admins: every run; others: their own runs) and adds the broker's queue depth
(`state.broker.queue_depth()`; None when the broker cannot answer, so the dashboard still loads).
`processes`: admins see every API/worker/orchestrator with its hostname and pid; other users see the
same heartbeats with the hostname, pid and the id (which embeds them) masked (`masked_process`).
Every viewer of the same (scope, window, bucket) is served from ONE computation per
OPS_CACHE_SECONDS (`SnapshotCache`): concurrent requests wait for the one in flight, so a
dashboard left open by many people costs the database one query set per refresh interval. A
computation first advances the metrics rollups (`store.metrics_rollup.advance`) so the live tail
it reads stays a few seconds long.
The response is typed Structs so the OpenAPI schema, and the designer's generated types, are exact.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
import psycopg
from litestar import get
from litestar.datastructures import State
from litestar.params import FromQuery

from flowstudio.api.deps import CurrentUser, RequestConn, requires
from flowstudio.api.errors import invalid
from flowstudio.store import metrics_rollup
from flowstudio.store import ops as store

log = logging.getLogger(__name__)


class ThroughputBucket(msgspec.Struct, kw_only=True):
    at: str
    succeeded: int
    failed: int
    cancelled: int


class Percentiles(msgspec.Struct, kw_only=True):
    """Duration percentiles of a flow's runs or a node type's steps, in seconds."""

    p50_s: float
    p95_s: float


class FlowDuration(Percentiles, kw_only=True):
    flow_id: str
    name: str
    runs: int


class NodeDuration(Percentiles, kw_only=True):
    node_type: str
    steps: int


class FailingNode(msgspec.Struct, kw_only=True):
    flow_id: str
    flow_name: str
    node_id: str
    node_type: str
    failures: int
    last_at: str | None
    last_error: str | None


class ProcessInfo(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    hostname: str
    pid: int
    started_at: str
    heartbeat_at: str
    heartbeat_age_s: float
    info: dict[str, Any]


class OpsStats(msgspec.Struct, kw_only=True):
    scope: str  # "all" (admin) or "own"
    window_minutes: int
    bucket_seconds: int
    runs_by_status: dict[str, int]
    throughput: list[ThroughputBucket]
    flow_durations: list[FlowDuration]
    node_durations: list[NodeDuration]
    failing_nodes: list[FailingNode]
    steps_by_status: dict[str, int]
    queue_depth: int | None
    processes: list[ProcessInfo]


def masked_process(process: dict[str, Any]) -> dict[str, Any]:
    """A process row without where it runs: an opaque stable id, no hostname, no pid."""
    opaque = hashlib.sha256(str(process["id"]).encode()).hexdigest()[:16]
    return {**process, "id": f"{process['kind']}-{opaque}", "hostname": "", "pid": 0}


class SnapshotCache:
    """One computation per key per `ttl` seconds, shared by concurrent callers."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[Any, tuple[float, dict[str, Any]]] = {}
        self.locks: dict[Any, anyio.Lock] = {}
        self.computations = 0

    async def get(self, key: Any, compute: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
        hit = self.entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        lock = self.locks.setdefault(key, anyio.Lock())
        async with lock:
            hit = self.entries.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            value = await compute()
            self.computations += 1
            now = time.monotonic()
            self.entries[key] = (now, value)
            for old in [k for k, (t, _) in self.entries.items() if now - t > 10 * self.ttl + 60]:
                self.entries.pop(old, None)  # forget windows nobody looks at any more
                self.locks.pop(old, None)
            return value


@get("/api/v1/ops/stats", guards=[requires("ops:read")])
async def ops_stats(
    state: State,
    user: CurrentUser,
    conn: RequestConn,
    minutes: FromQuery[int] = 60,
    bucket_seconds: FromQuery[int] = 60,
) -> OpsStats:
    if not 1 <= minutes <= 7 * 24 * 60 or not 5 <= bucket_seconds <= 24 * 3600:
        raise invalid(
            "query.minutes", "out of range", "minutes must be 1-10080 and bucket_seconds 5-86400"
        )
    if minutes * 60 // bucket_seconds > 2000:
        raise invalid("query.bucket_seconds", "too many buckets", "at most 2000 buckets")
    owner = None if user.is_admin else user.id
    cache: SnapshotCache | None = state.get("ops_cache")
    if cache is None:
        cache = SnapshotCache(state.settings.ops_cache_seconds)
        state.ops_cache = cache

    async def compute() -> dict[str, Any]:
        try:
            await metrics_rollup.advance(conn)
        except psycopg.Error as exc:  # the snapshot still reads the live tail
            log.warning("metrics rollup not advanced: %s", exc)
        snapshot = await store.ops_snapshot(conn, owner, minutes, bucket_seconds)
        try:
            with anyio.fail_after(5):
                snapshot["queue_depth"] = await state.broker.queue_depth()
        except Exception as exc:  # the dashboard must load even with the broker down
            log.warning("queue depth unavailable: %s", exc)
            snapshot["queue_depth"] = None
        return snapshot

    snapshot = await cache.get((owner, minutes, bucket_seconds), compute)
    return msgspec.convert(
        {
            **snapshot,
            "scope": "all" if user.is_admin else "own",
            "window_minutes": minutes,
            "bucket_seconds": bucket_seconds,
            "processes": (
                snapshot["processes"]
                if user.is_admin
                else [masked_process(p) for p in snapshot["processes"]]
            ),
        },
        OpsStats,
    )


ROUTES = [ops_stats]
