"""SQL for users: create/reset (`flowstudio user create`), find by email or id, change a password.

Sessions live in `store/sessions.py`, API keys in `store/api_keys.py`, MAXplatform identities in
`store/external_identities.py`. A role change ends the user's sessions through the database trigger
`users_roles_revoke_sessions` (migration 0012), whoever makes it; a password set here ends them in
the same transaction (all of them for a CLI reset, all but the caller's for `POST /api/auth/password`).
"""

from __future__ import annotations

from typing import Any

import psycopg

from flowstudio.auth.passwords import hash_password

USER_COLS = "id, email, name, roles, password_hash"


async def create_user(
    conn: psycopg.AsyncConnection[Any],
    *,
    email: str,
    password: str,
    roles: list[str],
    name: str = "",
) -> dict[str, Any]:
    """Create the user, or reset an existing one's password, roles and name (every session ends)."""
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO users (email, name, password_hash, roles) VALUES (lower(%s), %s, %s, %s)
               ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                   roles = EXCLUDED.roles, name = EXCLUDED.name, updated_at = now()
               RETURNING id, email, name, roles""",
            (email, name, hash_password(password), roles),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute("DELETE FROM sessions WHERE user_id = %s", (row["id"],))
    return row


async def user_by_email(conn: psycopg.AsyncConnection[Any], email: str) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLS} FROM users WHERE email = lower(%s)", (email,))
    return await cur.fetchone()


async def user_by_id(conn: psycopg.AsyncConnection[Any], user_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLS} FROM users WHERE id = %s", (user_id,))
    return await cur.fetchone()


async def set_password(
    conn: psycopg.AsyncConnection[Any], user_id: Any, password_hash: str, keep_session: Any
) -> int:
    """Store the new hash and end every other session of the user; returns how many ended."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s",
            (password_hash, user_id),
        )
        cur = await conn.execute(
            "DELETE FROM sessions WHERE user_id = %s AND id IS DISTINCT FROM %s",
            (user_id, keep_session),
        )
        return cur.rowcount
