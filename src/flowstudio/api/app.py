"""The Litestar application factory: `create_app(settings)`.

The lifespan opens the PostgreSQL pool, the broker and the outbox publisher (whose flush loop runs in
the app's task group) and closes them on shutdown. Routes come from one module per resource; every
handler receives `conn` (pooled connection) and, when it declares it, `user` (authenticated): named
dependencies, declared `conn: RequestConn` / `user: CurrentUser` (`api/deps.py`), as path and query
parameters are with `FromPath[...]` / `FromQuery[...]`. Errors are problem+json (`api/errors.py`).
The built designer (`resources.ui_dist`) is served at `/`; an install without one answers `/` with
a page that says how to get it.
`GET /metrics` and the HTTP metrics/tracing middlewares come from `observability/`. OpenAPI lives
at /schema. Before any handler decodes a body, the app-level guard (`api/guards.py`) checks CSRF
(cookie requests from other origins), the content type and the JSON limits, then the route's own
guard (`api/deps.py`: `requires(permission)` or `authenticated`) authenticates; `api/headers.py`
adds security headers to every response; CORS allows only CORS_ORIGINS (empty by default).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import msgspec
from litestar import Litestar, MediaType, Response, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from flowstudio import __version__, offload
from flowstudio.api import (
    auth_routes,
    batches,
    flow_extras,
    flow_secrets,
    flow_version,
    flows,
    keys,
    metrics,
    openai_compat,
    ops,
    providers,
    publishing,
    retention,
    run_control,
    runs,
    schedules,
    secrets,
    shares,
    sync_run,
    users_admin,
    webhooks,
)
from flowstudio.api.deps import provide_conn, provide_user
from flowstudio.api.errors import exception_handlers, problem_response
from flowstudio.api.events import EventHub
from flowstudio.api.guards import check_request
from flowstudio.api.headers import security_headers_middleware
from flowstudio.api.streams import StreamSlots
from flowstudio.auth.maxplatform import MaxplatformAuth
from flowstudio.observability import http as metrics_http
from flowstudio.observability.tracing import tracing_middleware
from flowstudio.queue.factory import make_broker
from flowstudio.queue.outbox import OutboxPublisher
from flowstudio.resources import ui_dist
from flowstudio.settings import Settings
from flowstudio.store import locks
from flowstudio.store.db import open_pool
from flowstudio.store.external_identities import user_for_identity

log = logging.getLogger(__name__)


class Liveness(msgspec.Struct, kw_only=True):
    status: Literal["ok"]


class Readiness(msgspec.Struct, kw_only=True):
    status: Literal["ok"]
    checks: dict[str, str]  # dependency name -> "ok" (503 problem+json with the errors otherwise)


@get("/health/live")
async def live() -> Liveness:
    return Liveness(status="ok")


@get("/health/ready")
async def ready(state: State) -> Response[Readiness]:
    checks: dict[str, str] = {}
    try:
        async with state.pool.connection(timeout=3) as conn:
            await locks.ping(conn)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    checks["broker"] = "ok" if await state.broker.ping() else "error"
    ok = all(v == "ok" for v in checks.values())
    if not ok:
        return problem_response(503, "Service Unavailable", "dependencies not ready", checks=checks)
    return Response(Readiness(status="ok", checks=checks))


NO_DESIGNER = """<!doctype html><html><head><meta charset="utf-8"><title>MAX Flowstudio</title></head>
<body><h1>MAX Flowstudio</h1><p>The API is running, but this install has no built designer.</p>
<p>To get it: install a wheel built where Node.js &ge; 20 was available (the build bundles the
designer), or in a source checkout run <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>,
or point <code>UI_DIST</code> at a built <code>frontend/dist</code>.
The HTTP API works without it: see <a href="/schema">/schema</a>.</p></body></html>"""


@get("/", include_in_schema=False, media_type=MediaType.HTML)
async def no_designer() -> str:
    return NO_DESIGNER


def create_app(settings: Settings) -> Litestar:
    offload.configure(settings.cpu_work_limit)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await open_pool(settings, max_size=settings.db_pool_size, name="flowstudio-api")
        broker = make_broker(settings)
        publisher = OutboxPublisher(broker, pool)
        hub = EventHub(settings)
        external = (
            MaxplatformAuth(settings, user_for_identity)
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
            streams=StreamSlots(settings.streams_per_user),
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
    handlers += retention.ROUTES
    handlers += users_admin.ROUTES
    handlers += metrics.ROUTES  # GET /metrics (api/metrics.py)
    handlers += [*publishing.ROUTES, *shares.ROUTES, *webhooks.ROUTES, *openai_compat.ROUTES]
    handlers += flow_secrets.ROUTES
    handlers += providers.ROUTES  # admin: LLM provider limits (api/providers.py)
    dist = ui_dist(settings.ui_dist)
    if dist is not None:
        handlers.append(
            create_static_files_router(
                path="/", directories=[dist], html_mode=True, include_in_schema=False
            )
        )
    else:
        handlers.append(no_designer)
    json_logs: dict[str, Any] = {"logging_config": None} if settings.log_format == "json" else {}
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={"conn": Provide(provide_conn), "user": Provide(provide_user)},
        exception_handlers=exception_handlers(),
        openapi_config=OpenAPIConfig(title="MAX Flowstudio", version=__version__, path="/schema"),
        cors_config=(
            CORSConfig(allow_origins=list(settings.cors_origins), allow_credentials=True)
            if settings.cors_origins
            else None
        ),
        guards=[check_request],  # request checks first; each route then declares its own
        middleware=[
            security_headers_middleware,
            metrics_http.metrics_middleware,
            tracing_middleware,
        ],
        request_max_body_size=10 * 1024 * 1024,
        # LOG_FORMAT=json: keep the JSON root handler (Litestar would install its own text one)
        **json_logs,
        state=State({"settings": settings}),
    )
