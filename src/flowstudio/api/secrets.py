"""Secret routes: create, list (names and timestamps only), replace the value, delete.

Values are write-only: `create_secret` / `update_secret` validate the name, encrypt the value with
`auth.secrets.SecretBox` (AES-256-GCM, key from SECRET_KEY) and store ciphertext + nonce through
`store/secrets.py`; no route ever returns a value. `secret_box(state)` answers 503 problem+json when
SECRET_KEY is empty, for every route. Secrets belong to one user: another user's name answers 404.
The worker decrypts them for `{{ secrets.NAME }}` in node params (`worker/context.py`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Response, Router, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, RequestBody

from flowstudio.api.deps import CurrentUser, RequestConn, requires
from flowstudio.api.errors import conflict, found, invalid, not_found, problem
from flowstudio.auth.secrets import SecretBox, SecretKeyMissing
from flowstudio.store import secrets as store

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_VALUE = 64 * 1024

SecretName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
SecretValue = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_VALUE)]


class SecretValueIn(msgspec.Struct, kw_only=True):
    value: SecretValue


class SecretIn(SecretValueIn, kw_only=True):
    name: SecretName


# Short field lists, alike in shape to queue/message.py's OutboxRow/StepMessage only.
class SecretOut(msgspec.Struct, kw_only=True):
    name: str
    created_at: datetime
    updated_at: datetime


def secret_box(state: State) -> SecretBox:
    try:
        return SecretBox.from_secret_key(state.settings.secret_key)
    except SecretKeyMissing as exc:
        raise problem(
            503,
            "SECRET_KEY not configured",
            path="settings.SECRET_KEY",
            reason="empty: secrets are disabled",
        ) from exc


def check_secret_name(name: str, path: str) -> None:
    """`fullmatch`, not the schema pattern: `$` would also accept a trailing newline."""
    if not _NAME.fullmatch(name):
        raise invalid(path, f"must match {NAME_PATTERN}", f"invalid secret name {name[:80]!r}")


def secret_out(row: dict[str, Any]) -> SecretOut:
    return SecretOut(name=row["name"], created_at=row["created_at"], updated_at=row["updated_at"])


@post("/", status_code=201)
async def create_secret(
    data: RequestBody[SecretIn], state: State, user: CurrentUser, conn: RequestConn
) -> SecretOut:
    box = secret_box(state)
    check_secret_name(data.name, "body.name")
    ciphertext, nonce = box.encrypt(user.id, data.name, data.value)
    row = await store.create_secret(conn, user.id, data.name, ciphertext, nonce)
    if row is None:
        raise conflict(
            f"secret {data.name} already exists (PUT /api/v1/secrets/{data.name} replaces it)",
            path="body.name",
            reason="already exists",
        )
    return secret_out(row)


@get("/")
async def list_secrets(state: State, user: CurrentUser, conn: RequestConn) -> list[SecretOut]:
    secret_box(state)
    return [secret_out(r) for r in await store.list_secrets(conn, user.id)]


@put("/{name:str}")
async def update_secret(
    name: FromPath[str],
    data: RequestBody[SecretValueIn],
    state: State,
    user: CurrentUser,
    conn: RequestConn,
) -> SecretOut:
    box = secret_box(state)
    check_secret_name(name, "path.name")
    ciphertext, nonce = box.encrypt(user.id, name, data.value)
    row = found(await store.update_secret(conn, user.id, name, ciphertext, nonce), "secret")
    return secret_out(row)


@delete("/{name:str}", status_code=204)
async def delete_secret(
    name: FromPath[str], state: State, user: CurrentUser, conn: RequestConn
) -> Response[None]:
    secret_box(state)
    check_secret_name(name, "path.name")
    if not await store.delete_secret(conn, user.id, name):
        raise not_found("secret")
    return Response(None, status_code=204)


# one guard for the whole controller: every route here needs `secrets:write`
ROUTES = [
    Router(
        "/api/v1/secrets",
        guards=[requires("secrets:write")],
        route_handlers=[create_secret, list_secrets, update_secret, delete_secret],
    )
]
