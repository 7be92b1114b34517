"""API key routes: create (the key is shown once), list own keys, revoke.

`create_api_key` makes a random `fsk_...` key with `auth.tokens.new_token`, stores only its SHA-256
(`store/api_keys.py`) and returns the plain key once. `list_api_keys` never returns a key or its hash.
`revoke_api_key` marks the key revoked, after which `deps.provide_user` refuses it (401). Keys are
strictly per user: another user's key id answers 404, also for admins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
import psycopg
from litestar import Response, delete, get, post

from flowstudio.api.deps import User, require
from flowstudio.api.errors import Problem, not_found
from flowstudio.auth.tokens import new_token
from flowstudio.store import api_keys as store

PREFIX_CHARS = 12  # "fsk_" + 8 random characters: enough to recognise a key in a list


class ApiKeyIn(msgspec.Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ApiKeyCreated(msgspec.Struct, kw_only=True):
    id: str
    key: str
    name: str
    prefix: str
    created_at: datetime


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None


@post("/api/v1/api-keys", status_code=201)
async def create_api_key(
    data: ApiKeyIn, user: User, conn: psycopg.AsyncConnection[Any]
) -> ApiKeyCreated:
    require(user, "keys:write")
    if not data.name.strip():
        raise Problem(
            422,
            "Unprocessable Content",
            "name must not be blank",
            errors=[{"path": "body.name", "reason": "must not be blank"}],
        )
    key, key_hash = new_token("fsk")
    row = await store.create_api_key(conn, user.id, data.name, key[:PREFIX_CHARS], key_hash)
    return ApiKeyCreated(
        id=str(row["id"]),
        key=key,
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
    )


@get("/api/v1/api-keys")
async def list_api_keys(user: User, conn: psycopg.AsyncConnection[Any]) -> list[ApiKeyOut]:
    return [
        ApiKeyOut(
            id=str(r["id"]),
            name=r["name"],
            prefix=r["prefix"],
            created_at=r["created_at"],
            last_used_at=r["last_used_at"],
            revoked=r["revoked_at"] is not None,
            revoked_at=r["revoked_at"],
        )
        for r in await store.list_api_keys(conn, user.id)
    ]


@delete("/api/v1/api-keys/{key_id:uuid}", status_code=204)
async def revoke_api_key(
    key_id: UUID, user: User, conn: psycopg.AsyncConnection[Any]
) -> Response[None]:
    require(user, "keys:write")
    if not await store.revoke_api_key(conn, user.id, key_id):
        raise not_found("API key")
    return Response(None, status_code=204)


ROUTES = [create_api_key, list_api_keys, revoke_api_key]
