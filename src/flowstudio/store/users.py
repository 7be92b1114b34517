"""SQL for users, sessions and API keys (the API's auth layer and `flowstudio user create` call it).

Every query that returns a user for authentication also returns `granted_permissions` (permissions
an admin granted beyond the roles, migration 0010); `set_granted_permission` changes them and
`version_author_permissions` reads those of the author of the flow version a run executes.
"""

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
           RETURNING id, email, name, roles, granted_permissions""",
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
        """SELECT u.id, u.email, u.name, u.roles, u.granted_permissions
           FROM sessions s JOIN users u ON u.id = s.user_id
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
           RETURNING u.id, u.email, u.name, u.roles, u.granted_permissions""",
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
           RETURNING id, email, name, roles, granted_permissions""",
        (email, name, roles),
    )
    row = await cur.fetchone()
    if row is None:  # unchanged: nothing was written
        cur = await conn.execute(
            "SELECT id, email, name, roles, granted_permissions FROM users WHERE email = lower(%s)",
            (email,),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_users(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, email, name, roles, granted_permissions FROM users ORDER BY email"
    )
    return await cur.fetchall()


async def set_granted_permission(
    conn: psycopg.AsyncConnection[Any], user_id: Any, permission: str, granted: bool
) -> dict[str, Any] | None:
    """Grant (or revoke) one permission; None when the user does not exist."""
    cur = await conn.execute(
        """UPDATE users SET updated_at = now(), granted_permissions = CASE WHEN %(granted)s
               THEN (SELECT array_agg(DISTINCT p ORDER BY p)
                     FROM unnest(granted_permissions || %(perm)s::text) AS p)
               ELSE array_remove(granted_permissions, %(perm)s::text) END
           WHERE id = %(user)s
           RETURNING id, email, name, roles, granted_permissions""",
        {"granted": granted, "perm": permission, "user": user_id},
    )
    return await cur.fetchone()


async def version_author_permissions(
    conn: psycopg.AsyncConnection[Any], run_id: Any, node_id: str
) -> dict[str, Any] | None:
    """Roles and granted permissions of who saved the flow version `run_id` executes, of the run's
    owner, and whether the run's tweaks override `node_id` (None: the author no longer exists)."""
    cur = await conn.execute(
        """SELECT u.roles, u.granted_permissions, o.roles AS owner_roles,
                  o.granted_permissions AS owner_granted,
                  coalesce(r.tweaks ? %s, false) AS tweaked
           FROM runs r
           JOIN flow_versions v ON v.flow_id = r.flow_id AND v.version = r.flow_version
           JOIN users u ON u.id = v.created_by
           JOIN users o ON o.id = r.owner_id
           WHERE r.id = %s""",
        (node_id, run_id),
    )
    return await cur.fetchone()
