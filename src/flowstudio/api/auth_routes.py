"""Auth endpoints: login (cookie + bearer token), logout, me, and the sign-up redirect to MAXplatform.

`login` first asks `store.login_attempts.retry_after` whether the email or the client IP has had
LOGIN_MAX_FAILURES failed logins within LOGIN_WINDOW_S (then 429 + Retry-After, even for a right
password, so the limit is no oracle); it then verifies the argon2 hash, records a failure or clears the
email's failures, and creates a revocable session row; the same token is returned as `access_token` for
programs and set as an HttpOnly SameSite cookie for the browser (`api/session_cookie.py`: Secure and
`__Host-` prefixed over TLS). The argon2 check runs off the event loop (`passwords.check_password`).
The client IP is what uvicorn reports (X-Forwarded-For only from FORWARDED_ALLOW_IPS, loopback by
default). A login from another origin is refused before it runs (`api/guards.py`, login CSRF).
"""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Redirect

from flowstudio.api.deps import User, bearer_token
from flowstudio.api.errors import Problem
from flowstudio.api.session_cookie import cleared_session_cookies, session_cookie
from flowstudio.auth.passwords import check_password
from flowstudio.auth.tokens import digest
from flowstudio.store import login_attempts, users

LOGIN_MAX_FAILURES = 10
LOGIN_WINDOW_S = 15 * 60


class LoginBody(msgspec.Struct, kw_only=True):
    email: str
    password: str


class TokenOut(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str = "bearer"


@post("/api/auth/login", status_code=200)
async def login(
    data: LoginBody, conn: psycopg.AsyncConnection[Any], request: Request[Any, Any, Any]
) -> Response[TokenOut]:
    email = data.email.strip().lower()
    ip = request.client.host if request.client else "unknown"
    wait = await login_attempts.retry_after(conn, email, ip, LOGIN_MAX_FAILURES, LOGIN_WINDOW_S)
    if wait is not None:
        raise Problem(
            429,
            "Too Many Requests",
            f"too many failed logins; retry in {wait} seconds",
            headers={"Retry-After": str(wait)},
        )
    row = await users.user_by_email(conn, email)
    if not await check_password(row["password_hash"] if row else None, data.password):
        await login_attempts.record_failure(conn, email, ip)
        raise Problem(401, "Unauthorized", "invalid email or password")
    await login_attempts.clear_email(conn, email)
    token = await users.create_session(conn, row["id"])
    cookie = session_cookie(request, request.app.state.settings, token)
    return Response(TokenOut(access_token=token), cookies=[cookie])


@post("/api/auth/logout", status_code=204)
async def logout(
    request: Request[Any, Any, Any], conn: psycopg.AsyncConnection[Any]
) -> Response[None]:
    token = bearer_token(request)
    if token:
        await users.delete_session(conn, digest(token))
    return Response(None, status_code=204, cookies=cleared_session_cookies())


@get("/api/auth/me")
async def me(user: User) -> User:
    return user


@get("/api/auth/signup", status_code=302)
async def signup(state: State) -> Redirect:
    base = state.settings.maxplatform_url.rstrip("/")
    return Redirect(f"{base}/signup", status_code=302)


ROUTES = [login, logout, me, signup]
