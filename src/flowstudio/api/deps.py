"""Request dependencies and route guards: a pooled DB connection, the signed-in user, permissions.

Routes declare who may call them once, in their decorator: `guards=[requires("runs:write")]` (the
user must hold that permission: 403 `missing permission runs:write`) or `guards=[authenticated]`
(any signed-in user). A guard runs before the handler decodes anything: `authenticate` looks the
credentials up on a short pooled connection of its own and keeps the `User` in the request scope
(`scope["user"]`, what Litestar's `request.user` reads), so `provide_user` hands the same user to
the handler without a second lookup. `tests/integration/test_route_guards.py` fails on a route that
declares no guard and is not in its public list. `provide_conn` lends one pooled connection per
request. Handlers declare both injections explicitly: `conn: RequestConn`, `user: CurrentUser`
(Litestar's `NamedDependency`). Authentication tries, in order, an API key (`x-api-key`, or
`Authorization: Bearer fsk_...` as OpenAI-style clients send it), a session token
(`Authorization: Bearer fss_...`) or the session cookie (`fs_session`, or `__Host-fs_session` over
TLS), then (AUTH_MODE=maxplatform) a MAXplatform token, and raises 401 otherwise
(`authenticated_row` is that lookup alone). Sessions past their idle timeout or absolute lifetime
are refused (`store.sessions`); expired or revoked keys too (`store.api_keys`). A scoped key is cut
down here, in one place (`auth.scopes`): the route must be one its scope allows (else 403), its
permissions shrink to running, and a `run:flow:` key carries `flow_scope`, which `api.access` and
`api.runs.owned_run` enforce. `require(user, permission)` is the check behind `requires`, called
explicitly only where the permission depends on what the handler loaded; `can_see(user, owner_id)`
the ownership rule (owners and admins; others get 404, never a hint the row exists: `seen_or_404`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any, TypeAlias, cast

import msgspec
import psycopg
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from flowstudio.api.errors import Problem, forbidden, not_found, too_many, unavailable
from flowstudio.auth import scopes
from flowstudio.auth.maxplatform import EmailCollision, LookupRateLimited
from flowstudio.auth.roles import permissions_of
from flowstudio.auth.tokens import digest
from flowstudio.store import api_keys, sessions
from flowstudio.store.db import Conn

SESSION_COOKIE = "fs_session"
# Over TLS the cookie is set as `__Host-fs_session` (Secure, Path=/, no Domain: a sibling subdomain
# or a plain-HTTP page cannot plant or overwrite it); both names are accepted on read.
SECURE_SESSION_COOKIE = "__Host-fs_session"
AnyRequest = Request[Any, Any, Any]  # the request type handlers and dependencies take
API_KEY_PREFIX = "fsk_"  # api/keys.py makes keys with auth.tokens.new_token("fsk")


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    roles: list[str]
    permissions: list[str]
    session_id: str | None = None  # set when authenticated by a login session
    key_scope: str = scopes.FULL  # the API key's scope; `full` for sessions and external tokens
    flow_scope: str | None = None  # the one flow a `run:flow:` key may touch

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


# Parameters Litestar injects by name are declared so (explicit since Litestar 2.23; inferred
# injection warns and stops working in 3.0), as path and query parameters are with `FromPath[...]` /
# `FromQuery[...]`, a JSON request body with `data: RequestBody[...]` (2.25) and a header with
# `HeaderParameter(name=...)` (`litestar.params`). The app maps `conn` to `provide_conn`, `user` to
# `provide_user`: a handler takes `conn: RequestConn` (the request's pooled connection) and
# `user: CurrentUser` (the authenticated user). Helpers called with them keep `Conn` / `User`.
RequestConn: TypeAlias = NamedDependency[Conn]
CurrentUser: TypeAlias = NamedDependency[User]


@asynccontextmanager
async def pooled(state: State) -> AsyncIterator[Conn]:
    """A pooled connection; 503 when the database cannot be reached."""
    try:
        async with state.pool.connection(timeout=10) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise unavailable("database unavailable") from exc


async def provide_conn(state: State) -> AsyncGenerator[Conn, None]:
    async with pooled(state) as conn:
        yield conn


def cookie_token(request: AnyRequest) -> str | None:
    return request.cookies.get(SECURE_SESSION_COOKIE) or request.cookies.get(SESSION_COOKIE) or None


def bearer_token(request: AnyRequest) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return cookie_token(request)


def client_address(request: AnyRequest) -> str:
    """The client's address as uvicorn reports it (X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else "unknown"


async def _external_user(request: AnyRequest, conn: Conn, token: str) -> dict[str, Any] | None:
    external = getattr(request.app.state, "maxplatform", None)
    if external is None:
        return None
    try:
        row: dict[str, Any] | None = await external.user_for_token(
            conn, token, client_address(request)
        )
    except LookupRateLimited as exc:
        raise too_many(str(exc), exc.retry_after) from exc
    except EmailCollision as exc:
        raise forbidden(
            "this MAXplatform account's email belongs to another Flowstudio account; accounts are "
            "never merged automatically: ask an administrator",
        ) from exc
    return row


def _scoped(user: User, scope: str, request: AnyRequest) -> User:
    if scope == scopes.FULL:
        return msgspec.structs.replace(user, key_scope=scope)
    template = str(request.scope.get("path_template") or "")
    if not scopes.route_allowed(scope, request.method, template):
        raise forbidden(f"this API key's scope ({scope}) does not allow this route")
    return msgspec.structs.replace(
        user,
        roles=[r for r in user.roles if r != "admin"],
        permissions=sorted(scopes.RUN_PERMISSIONS.intersection(user.permissions)),
        key_scope=scope,
        flow_scope=scopes.flow_of(scope),
    )


async def authenticated_row(request: AnyRequest, conn: Conn) -> dict[str, Any] | None:
    """The user row the request's credentials name (with `scope` for a key, `session_id` for a
    session), or None. Raises 429/403 for MAXplatform lookups that are rate-limited or refused."""
    api_key = request.headers.get("x-api-key")
    token = bearer_token(request)
    if not api_key and token and token.startswith(API_KEY_PREFIX):
        api_key, token = token, None
    if api_key:
        return await api_keys.user_by_api_key(conn, digest(api_key))
    if not token:
        return None
    idle = request.app.state.settings.session_idle_minutes
    row = await sessions.user_by_session(conn, digest(token), idle)
    if row is None:
        row = await _external_user(request, conn, token)
    return row


async def _user_of(request: AnyRequest, conn: Conn) -> User:
    row = await authenticated_row(request, conn)
    if row is None:
        raise Problem(
            401,
            "Unauthorized",
            "missing or invalid credentials",
            headers_hint="Authorization: Bearer <token> or x-api-key",
        )
    user = User(
        id=str(row["id"]),
        email=row["email"],
        name=row["name"],
        roles=list(row["roles"]),
        permissions=permissions_of(row["roles"], row.get("granted_permissions")),
        session_id=str(row["session_id"]) if row.get("session_id") else None,
    )
    if "scope" in row:
        return _scoped(user, str(row["scope"]), request)
    return user


async def provide_user(request: AnyRequest, conn: RequestConn) -> User:
    """The user the route's guard authenticated (or, for a route without one, authenticate now)."""
    cached = request.scope.get("user")
    if isinstance(cached, User):
        return cached
    user = await _user_of(request, conn)
    request.scope["user"] = user
    return user


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> User:
    """Authenticate the request once (401/403 as `provide_user`), on a pooled connection held only
    for the lookup; the user stays in the scope for `provide_user`."""
    cached = connection.scope.get("user")
    if isinstance(cached, User):
        return cached
    request = cast("AnyRequest", connection)  # guards of HTTP routes get the Request
    async with pooled(connection.app.state) as conn:
        user = await _user_of(request, conn)
    connection.scope["user"] = user
    return user


async def authenticated(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler | None = None
) -> None:
    """Route guard: any authenticated user (401 otherwise)."""
    await authenticate(connection)


class Requires:
    """Route guard: an authenticated user holding `permission` (`requires("runs:write")`)."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler | None = None
    ) -> None:
        require(await authenticate(connection), self.permission)

    def __repr__(self) -> str:
        return f"requires({self.permission!r})"


@cache
def requires(permission: str) -> Requires:
    return Requires(permission)


def require(user: User, permission: str) -> None:
    if permission not in user.permissions:
        raise forbidden(f"missing permission {permission}")


def can_see(user: User, owner_id: Any) -> bool:
    return user.is_admin or str(owner_id) == user.id


def seen_or_404(row: dict[str, Any] | None, user: User, what: str) -> dict[str, Any]:
    """`row` when `can_see` allows it, else 404 `{what} not found` (missing and foreign alike)."""
    if row is None or not can_see(user, row["owner_id"]):
        raise not_found(what)
    return row
