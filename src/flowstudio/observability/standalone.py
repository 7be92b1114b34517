"""METRICS_PORT: `/metrics` of one worker or orchestrator started alone (not under `flowstudio up`).

`serve(settings, kind)` runs a minimal HTTP/1.1 server on BACKEND_HOST:METRICS_PORT in the process's
task group (asyncio streams: no thread, no second framework). It answers `GET /metrics` with what
this process counted since it started (`COUNTERS.totals()`: LLM calls, tokens, 429s; recovery
counters for an orchestrator) and its DB pool (`flowstudio_process_db_pool_connections`) as
Prometheus text, checks METRICS_TOKEN like the API (bearer,
constant-time), answers 404 elsewhere and reads at most 16 KiB of request head with a timeout.
The cluster-wide families (runs, steps, queues, workers) are the API's: it reads them from
PostgreSQL, so they are not repeated here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from flowstudio.observability.counters import COUNTERS, HELP
from flowstudio.settings import Settings

log = logging.getLogger(__name__)
MAX_HEAD = 16 * 1024


class ProcessCounters:
    def collect(self) -> Iterator[Metric]:
        families: dict[str, list[tuple[dict[str, str], float]]] = {}
        for (family, label_json), value in sorted(COUNTERS.totals().items()):
            families.setdefault(family, []).append((json.loads(label_json), value))
        for family, samples in families.items():
            names = sorted({k for labels, _ in samples for k in labels})
            metric = CounterMetricFamily(family, HELP.get(family, family), labels=names)
            for labels, value in samples:
                metric.add_metric([labels.get(k, "") for k in names], value)
            yield metric


def pool_gauge(pool: Any, name: str, help_text: str) -> GaugeMetricFamily:
    """In-use, idle, max and waiting of a psycopg pool (the API's own and a standalone process's)."""
    stats = pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    gauge = GaugeMetricFamily(name, help_text, labels=["state"])
    gauge.add_metric(["in_use"], size - idle)
    gauge.add_metric(["idle"], idle)
    gauge.add_metric(["max"], pool.max_size)
    gauge.add_metric(["waiting_requests"], stats.get("requests_waiting", 0))
    return gauge


class PoolGauges:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        yield pool_gauge(
            self.pool,
            "flowstudio_process_db_pool_connections",
            "PostgreSQL pool connections of this process",
        )


def render(pool: Any = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCounters())  # type: ignore[arg-type]
    if pool is not None:
        registry.register(PoolGauges(pool))  # type: ignore[arg-type]
    return generate_latest(registry)


def _response(status: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def _handle(
    settings: Settings, pool: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    from flowstudio.observability.http import token_ok

    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        if method != "GET" or path.split("?")[0] != "/metrics":
            out = _response("404 Not Found", b"not found\n", "text/plain")
        elif not token_ok(settings, headers.get("authorization")):
            out = _response(
                "401 Unauthorized", b"unauthorized\n", "text/plain", "WWW-Authenticate: Bearer\r\n"
            )
        else:
            out = _response("200 OK", render(pool), CONTENT_TYPE_LATEST)
    except ValueError:
        out = _response("400 Bad Request", b"bad request\n", "text/plain")
    writer.write(out)
    try:
        await writer.drain()
    finally:
        writer.close()


async def serve(settings: Settings, kind: str, pool: Any = None) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(settings, pool, r, w),
        host=settings.backend_host,
        port=settings.metrics_port,
        limit=MAX_HEAD,
    )
    log.info(
        "%s metrics on http://%s:%d/metrics", kind, settings.backend_host, settings.metrics_port
    )
    async with server:
        await server.serve_forever()
