"""Request dependencies: a pooled DB connection and the authenticated user.

`provide_conn` lends one pooled connection per request. `provide_user` authenticates, in order, an API key
(`x-api-key`, or `Authorization: Bearer fsk_...` as OpenAI-style clients send it), a session token
(`Authorization: Bearer`) or the session cookie (`fs_session`, or `__Host-fs_session` over TLS), and
raises 401 otherwise; `authenticated_row` is that lookup alone, which long streams repeat.
`require(user, permission)` is the one permission check controllers call; `can_see(user, owner_id)`
the ownership rule (owners and admins; others get 404, never a hint the row exists).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import psycopg
from litestar import Request
from litestar.datastructures import State

from flowstudio.api.errors import Problem
from flowstudio.auth.roles import permissions_of
from flowstudio.auth.tokens import digest
from flowstudio.store import users

SESSION_COOKIE = "fs_session"
# Over TLS the cookie is set as `__Host-fs_session` (Secure, Path=/, no Domain: a sibling subdomain or
# a plain-HTTP page cannot plant or overwrite it); both names are accepted on read.
SECURE_SESSION_COOKIE = "__Host-fs_session"
API_KEY_PREFIX = "fsk_"  # api/keys.py makes keys with auth.tokens.new_token("fsk")


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    roles: list[str]
    permissions: list[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


async def provide_conn(state: State) -> AsyncGenerator[psycopg.AsyncConnection[Any], None]:
    try:
        async with state.pool.connection(timeout=10) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise Problem(503, "Service Unavailable", "database unavailable") from exc


def cookie_token(request: Request[Any, Any, Any]) -> str | None:
    return request.cookies.get(SECURE_SESSION_COOKIE) or request.cookies.get(SESSION_COOKIE) or None


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return cookie_token(request)


async def provide_user(request: Request[Any, Any, Any], conn: psycopg.AsyncConnection[Any]) -> User:
    row = await authenticated_row(request, conn)
    if row is None:
        raise Problem(
            401,
            "Unauthorized",
            "missing or invalid credentials",
            headers_hint="Authorization: Bearer <token> or x-api-key",
        )
    return User(
        id=str(row["id"]),
        email=row["email"],
        name=row["name"],
        roles=row["roles"],
        permissions=permissions_of(row["roles"]),
    )


async def authenticated_row(
    request: Request[Any, Any, Any], conn: psycopg.AsyncConnection[Any]
) -> dict[str, Any] | None:
    """The user row the request's credentials name, or None (also used to re-check long streams)."""
    row = None
    api_key = request.headers.get("x-api-key")
    token = bearer_token(request)
    if not api_key and token and token.startswith(API_KEY_PREFIX):
        api_key, token = token, None
    if api_key:
        row = await users.user_by_api_key(conn, digest(api_key))
    elif token:
        row = await users.user_by_session(conn, digest(token))
        external = getattr(request.app.state, "maxplatform", None)
        if row is None and external is not None:
            row = await external.user_for_token(conn, token)
    return row


def require(user: User, permission: str) -> None:
    if permission not in user.permissions:
        raise Problem(403, "Forbidden", f"missing permission {permission}")


def can_see(user: User, owner_id: Any) -> bool:
    return user.is_admin or str(owner_id) == user.id
