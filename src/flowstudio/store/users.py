"""SQL for users: create/reset (`flowstudio user create`), find by email or id, change a password.

Sessions live in `store/sessions.py`, API keys in `store/api_keys.py`, MAXplatform identities in
`store/external_identities.py`. A role change ends the user's sessions through the database trigger
`users_roles_revoke_sessions` (migration 0012), whoever makes it; a password set here ends them in
the same transaction (all of them for a CLI reset, all but the caller's for `POST /api/auth/password`).
Queries that return a user for authentication also return `granted_permissions` (granted by an
admin beyond the roles, migration 0010): `set_granted_permission`, `list_users`, and
`version_author_permissions` (who saved the flow version a run executes).
"""

from __future__ import annotations

from typing import Any

from flowstudio.auth.passwords import hash_password
from flowstudio.store.db import Conn

USER_COLS = "id, email, name, roles, password_hash, granted_permissions"


async def create_user(
    conn: Conn, *, email: str, password: str, roles: list[str], name: str = ""
) -> dict[str, Any]:
    """Create the user, or reset an existing one's password, roles and name (every session ends)."""
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO users (email, name, password_hash, roles) VALUES (lower(%s), %s, %s, %s)
               ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                   roles = EXCLUDED.roles, name = EXCLUDED.name, updated_at = now()
               RETURNING id, email, name, roles, granted_permissions""",
            (email, name, hash_password(password), roles),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute("DELETE FROM sessions WHERE user_id = %s", (row["id"],))
    return row


async def user_by_email(conn: Conn, email: str) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLS} FROM users WHERE email = lower(%s)", (email,))
    return await cur.fetchone()


async def user_by_id(conn: Conn, user_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {USER_COLS} FROM users WHERE id = %s", (user_id,))
    return await cur.fetchone()


async def set_password(conn: Conn, user_id: Any, password_hash: str, keep_session: Any) -> int:
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


async def list_users(conn: Conn) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, email, name, roles, granted_permissions FROM users ORDER BY email"
    )
    return await cur.fetchall()


async def set_granted_permission(
    conn: Conn, user_id: Any, permission: str, granted: bool
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
    conn: Conn, run_id: Any, node_id: str
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
