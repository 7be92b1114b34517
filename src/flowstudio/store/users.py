"""SQL for users, sessions and API keys (the API's auth layer and `flowstudio user create` call it)."""

from __future__ import annotations

from typing import Any

import psycopg

from flowstudio.auth.passwords import hash_password
from flowstudio.auth.tokens import new_token

USER_COLS = "id, email, name, roles, password_hash"


async def create_user(
    conn: psycopg.AsyncConnection[Any],
    *,
    email: str,
    password: str,
    roles: list[str],
    name: str = "",
) -> dict[str, Any]:
    cur = await conn.execute(
        """INSERT INTO users (email, name, password_hash, roles) VALUES (lower(%s), %s, %s, %s)
           ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,
               roles = EXCLUDED.roles, name = EXCLUDED.name, updated_at = now()
           RETURNING id, email, name, roles""",
        (email, name, hash_password(password), roles),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def user_by_email(conn: psycopg.AsyncConnection[Any], email: str) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLS} FROM users WHERE email = lower(%s)", (email,))
    return await cur.fetchone()


async def create_session(
    conn: psycopg.AsyncConnection[Any], user_id: Any, ttl_hours: float = 168
) -> str:
    token, token_hash = new_token("fss")
    await conn.execute(
        """INSERT INTO sessions (token_hash, user_id, expires_at)
           VALUES (%s, %s, now() + make_interval(hours => %s))""",
        (token_hash, user_id, int(ttl_hours)),
    )
    return token


async def delete_session(conn: psycopg.AsyncConnection[Any], token_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))


async def user_by_session(
    conn: psycopg.AsyncConnection[Any], token_hash: bytes
) -> dict[str, Any] | None:
    cur = await conn.execute(
        """SELECT u.id, u.email, u.name, u.roles FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = %s AND s.expires_at > now()""",
        (token_hash,),
    )
    return await cur.fetchone()


async def user_by_api_key(
    conn: psycopg.AsyncConnection[Any], key_hash: bytes
) -> dict[str, Any] | None:
    cur = await conn.execute(
        """UPDATE api_keys k SET last_used_at = now() FROM users u
           WHERE k.key_hash = %s AND k.revoked_at IS NULL AND u.id = k.user_id
           RETURNING u.id, u.email, u.name, u.roles""",
        (key_hash,),
    )
    return await cur.fetchone()


async def upsert_external_user(
    conn: psycopg.AsyncConnection[Any], *, email: str, name: str, roles: list[str]
) -> dict[str, Any]:
    """A user authenticated by MAXplatform: created on first sight, kept in sync after."""
    cur = await conn.execute(
        """INSERT INTO users (email, name, roles) VALUES (lower(%s), %s, %s)
           ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name, roles = EXCLUDED.roles,
               updated_at = now()
           WHERE users.name IS DISTINCT FROM EXCLUDED.name OR users.roles <> EXCLUDED.roles
           RETURNING id, email, name, roles""",
        (email, name, roles),
    )
    row = await cur.fetchone()
    if row is None:  # unchanged: nothing was written
        cur = await conn.execute(
            "SELECT id, email, name, roles FROM users WHERE email = lower(%s)", (email,)
        )
        row = await cur.fetchone()
    assert row is not None
    return row
