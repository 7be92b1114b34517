"""The API's own metric families and what `GET /metrics` (`api/metrics.py`) renders.

`metrics_middleware` (ASGI, registered on the app) counts every routed HTTP request in
`flowstudio_http_requests_total{method,route,status}` and times it in
`flowstudio_http_request_duration_seconds{method,route}`; `route` is Litestar's path template
(`/api/v1/runs/{run_id:uuid}`), never the raw path, so ids do not explode the label set.
`api/metrics.py: metrics` (the route) checks METRICS_TOKEN if set (bearer, constant-time compare; 401 otherwise),
refreshes the shared `DatabaseMetrics` (created on first use in `app.state`, cached per
METRICS_CACHE_SECONDS; with PostgreSQL down it serves the last snapshot with
`flowstudio_metrics_database_up 0`, or 503 before any) and renders the API registry: HTTP families, the API's DB pool
(`flowstudio_db_pool_connections{process_kind="api"}`) and the database collector.
`token_ok(settings, header)` is shared with `standalone`; `DELEGATE` carries the refreshed
`DatabaseMetrics` and pool into `REGISTRY`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric

from flowstudio.observability.dbmetrics import DatabaseMetrics
from flowstudio.observability.standalone import pool_gauge
from flowstudio.settings import Settings

log = logging.getLogger(__name__)
REGISTRY = CollectorRegistry(auto_describe=False)
HTTP_REQUESTS = Counter(
    "flowstudio_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "flowstudio_http_request_duration_seconds",
    "HTTP request duration (to the end of the response body) by method and route template",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            route = str(scope.get("path_template") or "unmatched")  # type: ignore[call-overload]
            method = str(scope.get("method", "GET"))  # type: ignore[call-overload]
            HTTP_REQUESTS.labels(method, route, str(status[0])).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)

    return middleware


def token_ok(settings: Settings, authorization: str | None) -> bool:
    if not settings.metrics_token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), settings.metrics_token.encode()
    )


class _Delegate:
    """Registered once in REGISTRY: yields the current app's database and pool families."""

    def __init__(self) -> None:
        self.db: DatabaseMetrics | None = None
        self.pool: Any = None

    def collect(self) -> Iterator[Metric]:
        if self.pool is not None:
            yield pool_gauge(
                self.pool,
                "flowstudio_api_db_pool_connections",
                "PostgreSQL pool connections of this API process",
            )
        if self.db is not None:
            yield from self.db.collect()


DELEGATE = _Delegate()
REGISTRY.register(DELEGATE)  # type: ignore[arg-type]
