"""API key routes: create (the key is shown once), list own keys, revoke.

`create_api_key` makes a random `fsk_...` key with `auth.tokens.new_token`, stores only its SHA-256
(`store/api_keys.py`) and returns the plain key once. A key has a scope (`auth.scopes`: `full` by
default, `run`, or `run:flow:<id>` / `{"scope": "run:flow", "flow_id": ...}` for a flow the caller
may run) and an expiry (`expires_in_days`, default API_KEY_DEFAULT_DAYS; 0 there means no expiry by
default), after which `deps.provide_user` refuses it (401). `list_api_keys` never returns a key or
its hash. `revoke_api_key` marks the key revoked (401 after). Keys are strictly per user: another
user's key id answers 404, also for admins. Scoped keys cannot reach these routes at all
(`auth.scopes`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, RequestBody

from flowstudio.api.access import runnable_flow
from flowstudio.api.deps import CurrentUser, RequestConn, authenticated, requires
from flowstudio.api.errors import Problem, invalid, not_found
from flowstudio.api.rows import row_as
from flowstudio.auth import scopes
from flowstudio.auth.tokens import new_token
from flowstudio.store import api_keys as store

PREFIX_CHARS = 12  # "fsk_" + 8 random characters: enough to recognise a key in a list
MAX_DAYS = 3650


class ApiKeyIn(msgspec.Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    scope: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = scopes.FULL
    flow_id: UUID | None = None
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=MAX_DAYS)] | None = None


class ApiKeyCreated(msgspec.Struct, kw_only=True):
    id: str
    key: str
    name: str
    prefix: str
    scope: str
    created_at: datetime
    expires_at: datetime | None


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    prefix: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    expired: bool
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None


def _invalid(path: str, reason: str) -> Problem:
    return invalid(path, reason, f"{path}: {reason}")


@post("/api/v1/api-keys", status_code=201, guards=[requires("keys:write")])
async def create_api_key(
    data: RequestBody[ApiKeyIn], user: CurrentUser, conn: RequestConn, state: State
) -> ApiKeyCreated:
    if not data.name.strip():
        raise _invalid("body.name", "must not be blank")
    scope = scopes.make_scope(data.scope, data.flow_id)
    if scope is None:
        raise _invalid(
            "body.scope", "must be full, run, or run:flow with flow_id (or run:flow:<flow id>)"
        )
    flow_id = scopes.flow_of(scope)
    if flow_id is not None:
        await runnable_flow(conn, user, UUID(flow_id))  # 404 / 403 like starting a run
    days = data.expires_in_days or state.settings.api_key_default_days
    expires_at = datetime.now(timezone.utc) + timedelta(days=days) if days > 0 else None
    key, key_hash = new_token("fsk")
    row = await store.create_api_key(
        conn, user.id, data.name, key[:PREFIX_CHARS], key_hash, scope=scope, expires_at=expires_at
    )
    return ApiKeyCreated(
        id=str(row["id"]),
        key=key,
        name=row["name"],
        prefix=row["prefix"],
        scope=row["scope"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


@get("/api/v1/api-keys", guards=[authenticated])
async def list_api_keys(user: CurrentUser, conn: RequestConn) -> list[ApiKeyOut]:
    now = datetime.now(timezone.utc)
    return [
        row_as(
            ApiKeyOut,
            r,
            expired=r["expires_at"] is not None and r["expires_at"] <= now,
            revoked=r["revoked_at"] is not None,
        )
        for r in await store.list_api_keys(conn, user.id)
    ]


@delete("/api/v1/api-keys/{key_id:uuid}", status_code=204, guards=[requires("keys:write")])
async def revoke_api_key(
    key_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    if not await store.revoke_api_key(conn, user.id, key_id):
        raise not_found("API key")
    return Response(None, status_code=204)


ROUTES = [create_api_key, list_api_keys, revoke_api_key]
