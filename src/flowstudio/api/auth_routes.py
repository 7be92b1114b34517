"""Auth endpoints: login (cookie + bearer token), logout, me, the sign-up redirect to MAXplatform.

`login` asks `store.login_attempts` whether this client is known for the account (its address or its
`fs_device` cookie logged in before) and how long it must wait (exponential backoff per (email,
address), and for unknown clients also per address and per email): a wait answers 429 + Retry-After,
even for a right password, so the limit is no oracle. It then verifies the argon2 hash, records a
failure or a success (which remembers the address and device), and creates a revocable session row
(`store.sessions`, with user agent and address, SESSION_MAX_HOURS lifetime, SESSION_IDLE_MINUTES
idle timeout); the token is returned as `access_token` for programs and set as an HttpOnly SameSite
cookie for the browser. The client address is what uvicorn reports (`deps.client_address`). Account
routes (password change, sessions, log out everywhere) are in `api/account.py` and listed in ROUTES
here. The argon2 check runs off the event loop (`passwords.check_password`); the session cookie is
Secure and `__Host-` prefixed over TLS (`api/session_cookie.py`). A login from another origin is
refused before it runs (`api/guards.py`, login CSRF).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

import msgspec
from litestar import Response, get, post
from litestar.datastructures import Cookie, State
from litestar.params import RequestBody
from litestar.response import Redirect

from flowstudio.api import account
from flowstudio.api.account import Password
from flowstudio.api.deps import (
    AnyRequest,
    CurrentUser,
    RequestConn,
    authenticated,
    bearer_token,
    client_address,
)
from flowstudio.api.errors import unauthorized
from flowstudio.api.login_backoff import backoff_policy, too_many
from flowstudio.api.rows import row_as
from flowstudio.api.session_cookie import cleared_session_cookies, cookie_is_secure, session_cookie
from flowstudio.auth.passwords import check_password
from flowstudio.auth.tokens import digest
from flowstudio.settings import Settings
from flowstudio.store import login_attempts, sessions, users

DEVICE_COOKIE = "fs_device"
DEVICE_DAYS = 180


class LoginBody(msgspec.Struct, kw_only=True):
    email: Annotated[str, msgspec.Meta(max_length=320)]
    password: Password


class TokenOut(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str = "bearer"


class MeOut(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    roles: list[str]
    permissions: list[str]
    scope: str  # `full`, or the API key's scope


def _device_hash(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if value else None


@post("/api/auth/login", status_code=200)
async def login(
    data: RequestBody[LoginBody], conn: RequestConn, request: AnyRequest
) -> Response[TokenOut]:
    settings: Settings = request.app.state.settings
    email = data.email.strip().lower()
    ip = client_address(request)
    device = request.cookies.get(DEVICE_COOKIE) or None
    policy = backoff_policy(settings)
    known = await login_attempts.known_client(conn, email, ip, _device_hash(device))
    wait = await login_attempts.retry_after(conn, email, ip, known, policy)
    if wait is not None:
        raise too_many(wait)
    row = await users.user_by_email(conn, email)
    ok = await check_password(row["password_hash"] if row is not None else None, data.password)
    if row is None or not ok:
        await login_attempts.record_failure(conn, email, ip, policy.window_s)
        raise unauthorized("invalid email or password")
    device = device or secrets.token_urlsafe(24)
    await login_attempts.record_success(conn, email, ip, _device_hash(device) or "")
    token = await sessions.create_session(
        conn,
        row["id"],
        max_hours=settings.session_max_hours,
        user_agent=request.headers.get("user-agent", ""),
        ip=ip,
    )
    session = session_cookie(request, settings, token)
    session.max_age = int(settings.session_max_hours * 3600)
    cookies = [
        session,
        Cookie(
            key=DEVICE_COOKIE,
            value=device,
            httponly=True,
            samesite="lax",
            secure=cookie_is_secure(request, settings),
            path="/api/auth",
            max_age=DEVICE_DAYS * 86400,
        ),
    ]
    return Response(TokenOut(access_token=token), cookies=cookies)


@post("/api/auth/logout", status_code=204)
async def logout(request: AnyRequest, conn: RequestConn) -> Response[None]:
    token = bearer_token(request)
    if token:
        await sessions.delete_session(conn, digest(token))
    return Response(None, status_code=204, cookies=cleared_session_cookies())


@get("/api/auth/me", guards=[authenticated])
async def me(user: CurrentUser) -> MeOut:
    return row_as(MeOut, msgspec.structs.asdict(user), scope=user.key_scope)


@get("/api/auth/signup", status_code=302)
async def signup(state: State) -> Redirect:
    base = state.settings.maxplatform_url.rstrip("/")
    return Redirect(f"{base}/signup", status_code=302)


ROUTES = [login, logout, me, signup, *account.ROUTES]
