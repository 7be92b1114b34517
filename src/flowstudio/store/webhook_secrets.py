"""SQL for webhook signing secrets (one per flow, AES-GCM ciphertext).

`api/webhook_signing.py` calls these: `put_secret` creates or rotates, `get_secret` reads the
ciphertext for verification, `delete_secret` makes the webhook unsigned again.
"""

from __future__ import annotations

from typing import Any

from flowstudio.store.db import Conn


async def put_secret(
    conn: Conn, flow_id: Any, ciphertext: bytes, nonce: bytes, user_id: str
) -> dict[str, Any]:
    cur = await conn.execute(
        """INSERT INTO webhook_secrets (flow_id, ciphertext, nonce, created_by)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (flow_id) DO UPDATE SET ciphertext = EXCLUDED.ciphertext,
               nonce = EXCLUDED.nonce, created_by = EXCLUDED.created_by, created_at = now()
           RETURNING created_at""",
        (flow_id, ciphertext, nonce, user_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_secret(conn: Conn, flow_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT ciphertext, nonce, created_at FROM webhook_secrets WHERE flow_id = %s", (flow_id,)
    )
    return await cur.fetchone()


async def delete_secret(conn: Conn, flow_id: Any) -> bool:
    cur = await conn.execute("DELETE FROM webhook_secrets WHERE flow_id = %s", (flow_id,))
    return cur.rowcount > 0
