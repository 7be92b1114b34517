"""SQL for API keys: create (only the SHA-256 of the key is stored), list and revoke a user's own keys.

The API's key routes (`api/keys.py`) call these; authentication by key is `users.user_by_api_key`, which
ignores revoked keys.
"""

from __future__ import annotations

from typing import Any

import psycopg

PUBLIC_COLS = "id, name, prefix, created_at, last_used_at, revoked_at"


async def create_api_key(
    conn: psycopg.AsyncConnection[Any], user_id: str, name: str, prefix: str, key_hash: bytes
) -> dict[str, Any]:
    cur = await conn.execute(
        f"""INSERT INTO api_keys (user_id, name, prefix, key_hash) VALUES (%s, %s, %s, %s)
            RETURNING {PUBLIC_COLS}""",
        (user_id, name, prefix, key_hash),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def list_api_keys(conn: psycopg.AsyncConnection[Any], user_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {PUBLIC_COLS} FROM api_keys WHERE user_id = %s ORDER BY created_at DESC, id",
        (user_id,),
    )
    return await cur.fetchall()


async def revoke_api_key(conn: psycopg.AsyncConnection[Any], user_id: str, key_id: Any) -> bool:
    """Idempotent: revoking an already revoked key keeps its first revocation time."""
    cur = await conn.execute(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
           WHERE id = %s AND user_id = %s""",
        (key_id, user_id),
    )
    return cur.rowcount > 0
