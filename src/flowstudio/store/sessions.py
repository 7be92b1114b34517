"""SQL for login sessions: create, authenticate (idle + absolute expiry), list, revoke, log out all.

A session row holds only the SHA-256 of its `fss_` token plus a public `id` (what listing and revoking
use; the token is never shown again). `user_by_session` is called on every request authenticated by a
session: it refuses a session past `expires_at` (absolute lifetime, SESSION_MAX_HOURS) or idle longer
than SESSION_IDLE_MINUTES, and moves `last_seen_at` at most once a minute (or once per half idle
timeout when that is shorter): the UPDATE is skipped while the value is fresh, so a busy client costs
one SELECT per request. A user's expired rows are pruned when they log in.
"""

from __future__ import annotations

from typing import Any

from flowstudio.auth.tokens import new_token
from flowstudio.store.db import Conn

TOUCH_EVERY_S = 60
PUBLIC_COLS = "id, created_at, last_seen_at, expires_at, user_agent, ip"


async def create_session(
    conn: Conn, user_id: Any, *, max_hours: float, user_agent: str = "", ip: str = ""
) -> str:
    token, token_hash = new_token("fss")
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO sessions (token_hash, user_id, expires_at, user_agent, ip)
               VALUES (%s, %s, now() + make_interval(secs => %s), %s, %s)""",
            (token_hash, user_id, max_hours * 3600, user_agent[:300], ip[:100]),
        )
        await conn.execute(
            "DELETE FROM sessions WHERE user_id = %s AND expires_at < now()", (user_id,)
        )
    return token


async def user_by_session(
    conn: Conn, token_hash: bytes, idle_minutes: float
) -> dict[str, Any] | None:
    """The user and `session_id` of a live session, or None (unknown, expired or idle too long)."""
    cur = await conn.execute(
        """SELECT u.id, u.email, u.name, u.roles, u.granted_permissions, s.id AS session_id,
                  s.last_seen_at < now() - make_interval(secs => %s) AS stale
           FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = %s AND s.expires_at > now()
             AND s.last_seen_at > now() - make_interval(secs => %s)""",
        (min(TOUCH_EVERY_S, idle_minutes * 30), token_hash, idle_minutes * 60),
    )
    row = await cur.fetchone()
    if row is not None and row["stale"]:
        await conn.execute(
            "UPDATE sessions SET last_seen_at = now() WHERE id = %s", (row["session_id"],)
        )
    return row


async def list_sessions(conn: Conn, user_id: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {PUBLIC_COLS} FROM sessions WHERE user_id = %s AND expires_at > now()
            ORDER BY last_seen_at DESC, id""",
        (user_id,),
    )
    return await cur.fetchall()


async def delete_session(conn: Conn, token_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))


async def revoke_session(conn: Conn, user_id: Any, session_id: Any) -> bool:
    """Only the user's own session: another user's id matches no row (the route answers 404)."""
    cur = await conn.execute(
        "DELETE FROM sessions WHERE id = %s AND user_id = %s", (session_id, user_id)
    )
    return cur.rowcount > 0


async def revoke_all(conn: Conn, user_id: Any) -> int:
    cur = await conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
    return cur.rowcount
