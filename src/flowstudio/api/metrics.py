"""`GET /metrics`: the API process's Prometheus registry (families in `observability/http.py`).

Checks METRICS_TOKEN if set (bearer, constant-time compare; 401 problem+json otherwise), refreshes
the shared `DatabaseMetrics` (created on first use in `app.state`, cached per METRICS_CACHE_SECONDS;
with PostgreSQL down it serves the last snapshot with `flowstudio_metrics_database_up 0`, or 503
before any) and renders `REGISTRY`.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from flowstudio.api.deps import AnyRequest
from flowstudio.api.errors import problem_response
from flowstudio.observability.dbmetrics import DatabaseMetrics
from flowstudio.observability.http import DELEGATE, REGISTRY, token_ok
from flowstudio.settings import Settings

log = logging.getLogger(__name__)


@get("/metrics", include_in_schema=False)
async def metrics(request: AnyRequest, state: State) -> Response[Any]:
    settings: Settings = state.settings
    if not token_ok(settings, request.headers.get("authorization")):
        return problem_response(
            401,
            "Unauthorized",
            "metrics need Authorization: Bearer <METRICS_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    db: DatabaseMetrics | None = state.get("db_metrics")
    if db is None:
        db = DatabaseMetrics(
            state.pool, state.broker, settings.lease_seconds, settings.metrics_cache_seconds
        )
        state.db_metrics = db
    try:
        await db.refresh()
        db.database_up = True
    except Exception as exc:  # PostgreSQL down: the last snapshot, flagged, or 503 if none
        log.warning("metrics collection failed: %s", exc)
        db.database_up = False
        if db.snapshot is None:
            return problem_response(503, "Service Unavailable", "database unavailable")
    DELEGATE.db, DELEGATE.pool = db, state.pool
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


ROUTES = [metrics]
