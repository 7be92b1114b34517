"""The Litestar application factory: `create_app(settings)`.

The lifespan opens the PostgreSQL pool, the broker and the outbox publisher (whose flush loop runs in
the app's task group) and closes them on shutdown. Routes come from one module per resource; every
handler receives `conn` (pooled connection) and, when it declares it, `user` (authenticated). Errors
are problem+json (`api/errors.py`). `GET /metrics` and the HTTP metrics/tracing middlewares come from
`observability/`. The built designer (frontend/dist) is served at `/` if present.
OpenAPI lives at /schema.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from litestar import Litestar, Response, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from flowstudio import __version__
from flowstudio.api import (
    auth_routes,
    batches,
    flow_extras,
    flow_version,
    flows,
    keys,
    openai_compat,
    ops,
    publishing,
    run_control,
    runs,
    schedules,
    secrets,
    shares,
    sync_run,
    webhooks,
)
from flowstudio.api.deps import provide_conn, provide_user
from flowstudio.api.errors import exception_handlers, problem_response
from flowstudio.api.events import EventHub
from flowstudio.auth.maxplatform import MaxplatformAuth
from flowstudio.observability import http as metrics_http
from flowstudio.observability.tracing import tracing_middleware
from flowstudio.queue.broker import RabbitBroker
from flowstudio.queue.outbox import OutboxPublisher
from flowstudio.settings import Settings
from flowstudio.store.db import open_pool

log = logging.getLogger(__name__)


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready")
async def ready(state: State) -> Response[Any]:
    checks: dict[str, str] = {}
    try:
        async with state.pool.connection(timeout=3) as conn:
            await conn.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    checks["broker"] = "ok" if await state.broker.ping() else "error"
    ok = all(v == "ok" for v in checks.values())
    if not ok:
        return problem_response(503, "Service Unavailable", "dependencies not ready", checks=checks)
    return Response({"status": "ok", "checks": checks})


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await open_pool(settings, max_size=settings.db_pool_size, name="flowstudio-api")
        broker = RabbitBroker(settings.amqp_url, settings.queue_prefix)
        publisher = OutboxPublisher(broker, pool)
        hub = EventHub(settings)
        external = (
            MaxplatformAuth(settings.maxplatform_url, settings.maxplatform_me_path)
            if settings.auth_mode == "maxplatform"
            else None
        )
        app.state.update(
            pool=pool,
            broker=broker,
            publisher=publisher,
            settings=settings,
            hub=hub,
            maxplatform=external,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(publisher.flush_loop)
            tg.start_soon(hub.run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await publisher.flush_published()
            await broker.close()
            await pool.close()
            if external is not None:
                await external.close()

    handlers: list[Any] = [live, ready, *auth_routes.ROUTES, *flows.ROUTES, *runs.ROUTES]
    handlers += [*keys.ROUTES, *secrets.ROUTES, *flow_extras.ROUTES]
    handlers += [*run_control.ROUTES, *sync_run.ROUTES, *schedules.ROUTES]
    handlers += [*ops.ROUTES, *flow_version.ROUTES]
    handlers += batches.ROUTES
    handlers += metrics_http.ROUTES  # GET /metrics (observability/http.py)
    handlers += [*publishing.ROUTES, *shares.ROUTES, *webhooks.ROUTES, *openai_compat.ROUTES]
    dist = Path(settings.ui_dist)
    if (dist / "index.html").is_file():
        handlers.append(
            create_static_files_router(
                path="/", directories=[dist], html_mode=True, include_in_schema=False
            )
        )
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={"conn": Provide(provide_conn), "user": Provide(provide_user)},
        exception_handlers=exception_handlers(),
        openapi_config=OpenAPIConfig(title="MAX Flowstudio", version=__version__, path="/schema"),
        cors_config=CORSConfig(
            allow_origins=["http://localhost:3005", "http://127.0.0.1:3005"], allow_credentials=True
        ),
        request_max_body_size=10 * 1024 * 1024,
        middleware=[metrics_http.metrics_middleware, tracing_middleware],
        # LOG_FORMAT=json: keep the JSON root handler (Litestar would install its own text one)
        **({"logging_config": None} if settings.log_format == "json" else {}),
        state=State({"settings": settings}),
    )
