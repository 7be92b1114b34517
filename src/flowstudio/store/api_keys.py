"""SQL for API keys: create (only the SHA-256 of the key is stored), list, revoke, authenticate.

The API's key routes (`api/keys.py`) call the first three; `api.deps.provide_user` calls
`user_by_api_key`, which refuses revoked and expired keys and returns the key's `scope` ('full', 'run'
or 'run:flow:<uuid>') with the user. `last_used_at` moves at most once a minute (no write per request).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowstudio.store.db import Conn

PUBLIC_COLS = "id, name, prefix, scope, created_at, expires_at, last_used_at, revoked_at"
TOUCH_EVERY_S = 60


async def create_api_key(
    conn: Conn,
    user_id: str,
    name: str,
    prefix: str,
    key_hash: bytes,
    *,
    scope: str = "full",
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    cur = await conn.execute(
        f"""INSERT INTO api_keys (user_id, name, prefix, key_hash, scope, expires_at)
            VALUES (%s, %s, %s, %s, %s, %s) RETURNING {PUBLIC_COLS}""",
        (user_id, name, prefix, key_hash, scope, expires_at),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def list_api_keys(conn: Conn, user_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {PUBLIC_COLS} FROM api_keys WHERE user_id = %s ORDER BY created_at DESC, id",
        (user_id,),
    )
    return await cur.fetchall()


async def revoke_api_key(conn: Conn, user_id: str, key_id: Any) -> bool:
    """Idempotent: revoking an already revoked key keeps its first revocation time."""
    cur = await conn.execute(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
           WHERE id = %s AND user_id = %s""",
        (key_id, user_id),
    )
    return cur.rowcount > 0


async def user_by_api_key(conn: Conn, key_hash: bytes) -> dict[str, Any] | None:
    """The key's user with `key_id` and `scope`, or None (unknown, revoked or expired)."""
    cur = await conn.execute(
        """SELECT u.id, u.email, u.name, u.roles, u.granted_permissions, k.id AS key_id, k.scope,
                  k.last_used_at IS NULL
                  OR k.last_used_at < now() - make_interval(secs => %s) AS stale
           FROM api_keys k JOIN users u ON u.id = k.user_id
           WHERE k.key_hash = %s AND k.revoked_at IS NULL
             AND (k.expires_at IS NULL OR k.expires_at > now())""",
        (TOUCH_EVERY_S, key_hash),
    )
    row = await cur.fetchone()
    if row is not None and row["stale"]:
        await conn.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE id = %s", (row["key_id"],)
        )
    return row
