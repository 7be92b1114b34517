"""Account routes of the signed-in user: change the password, list and revoke sessions, log out all.

- `POST /api/auth/password {"current_password","new_password"}`: only with a login session (not an
  API key or an external token); the current password is checked under the login backoff (failures
  count like failed logins for this address); the new hash is stored and every OTHER session of the
  user ends in the same transaction (`store.users.set_password`). 204.
- `GET /api/auth/sessions`: the caller's live sessions (id, created, last seen, expiry, user agent,
  address, `current`), never a token.
- `DELETE /api/auth/sessions/{id}`: ends one of the caller's sessions; another user's id is 404.
- `POST /api/auth/logout-all`: ends every session of the caller (the current one too). 204.
Role changes end sessions through a database trigger (migration 0012), not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import anyio
import msgspec
from litestar import Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, RequestBody

from flowstudio.api.deps import (
    SESSION_COOKIE,
    AnyRequest,
    CurrentUser,
    RequestConn,
    authenticated,
    client_address,
)
from flowstudio.api.errors import forbidden, invalid, not_found
from flowstudio.api.login_backoff import backoff_policy, too_many
from flowstudio.api.rows import row_as
from flowstudio.auth.passwords import hash_password, verify_password
from flowstudio.store import login_attempts, sessions, users

MIN_PASSWORD = 8


Password = Annotated[str, msgspec.Meta(max_length=1024)]  # also the login body's (auth_routes.py)


class PasswordChange(msgspec.Struct, kw_only=True):
    current_password: Password
    new_password: Password


def _clear_cookie() -> Cookie:
    return Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/")


@post("/api/auth/password", status_code=204, guards=[authenticated])
async def change_password(
    data: RequestBody[PasswordChange], user: CurrentUser, conn: RequestConn, request: AnyRequest
) -> Response[None]:
    if user.session_id is None:
        raise forbidden("changing the password needs a login session")
    if len(data.new_password) < MIN_PASSWORD:
        raise invalid(
            "body.new_password",
            f"at least {MIN_PASSWORD} characters",
            f"the new password needs at least {MIN_PASSWORD} characters",
        )
    policy = backoff_policy(request.app.state.settings)
    ip = client_address(request)
    wait = await login_attempts.retry_after(conn, user.email, ip, True, policy)
    if wait is not None:
        raise too_many(wait)
    row = await users.user_by_id(conn, user.id)
    stored = row["password_hash"] if row else None
    if not await anyio.to_thread.run_sync(verify_password, stored, data.current_password):
        await login_attempts.record_failure(conn, user.email, ip, policy.window_s)
        raise forbidden(
            "the current password is wrong", path="body.current_password", reason="wrong password"
        )
    new_hash = await anyio.to_thread.run_sync(hash_password, data.new_password)
    await users.set_password(conn, user.id, new_hash, keep_session=user.session_id)
    return Response(None, status_code=204)


class SessionOut(msgspec.Struct, kw_only=True):
    """One of the user's live login sessions (`GET /api/auth/sessions`)."""

    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str
    ip: str
    current: bool


@get("/api/auth/sessions", guards=[authenticated])
async def list_sessions(user: CurrentUser, conn: RequestConn) -> list[SessionOut]:
    return [
        row_as(SessionOut, r, current=str(r["id"]) == user.session_id)
        for r in await sessions.list_sessions(conn, user.id)
    ]


@delete("/api/auth/sessions/{session_id:uuid}", status_code=204, guards=[authenticated])
async def revoke_session(
    session_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    if not await sessions.revoke_session(conn, user.id, session_id):
        raise not_found("session")
    cookies = [_clear_cookie()] if str(session_id) == user.session_id else []
    return Response(None, status_code=204, cookies=cookies)


@post("/api/auth/logout-all", status_code=204, guards=[authenticated])
async def logout_all(user: CurrentUser, conn: RequestConn) -> Response[None]:
    await sessions.revoke_all(conn, user.id)
    return Response(None, status_code=204, cookies=[_clear_cookie()])


ROUTES = [change_password, list_sessions, revoke_session, logout_all]
