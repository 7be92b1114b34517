"""SQL for flow shares: who besides the owner may run ('run') or read ('view') a flow.

`api/shares.py` calls `upsert_share` (share again = change the permission), `list_shares` and
`delete_share`; the access checks read a caller's share together with the flow in one query
(`store.flows.get_flow_for`, `list_visible_flows`), so nothing here is on the run path.
"""

from __future__ import annotations

from typing import Any

import psycopg

SHARE_COLS = "s.flow_id, s.user_id, u.email, u.name, s.permission, s.created_at, s.updated_at"


async def upsert_share(
    conn: psycopg.AsyncConnection[Any], flow_id: Any, user_id: Any, permission: str, by: str
) -> tuple[dict[str, Any], bool]:
    """The share row and whether it is new (False: an existing share got `permission`)."""
    cur = await conn.execute(
        """INSERT INTO flow_shares (flow_id, user_id, permission, created_by)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (flow_id, user_id) DO UPDATE
               SET permission = EXCLUDED.permission, updated_at = now()
           RETURNING (xmax = 0) AS created""",
        (flow_id, user_id, permission, by),
    )
    row = await cur.fetchone()
    assert row is not None
    share = await get_share(conn, flow_id, user_id)
    assert share is not None
    return share, bool(row["created"])


async def get_share(
    conn: psycopg.AsyncConnection[Any], flow_id: Any, user_id: Any
) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"""SELECT {SHARE_COLS} FROM flow_shares s JOIN users u ON u.id = s.user_id
            WHERE s.flow_id = %s AND s.user_id = %s""",
        (flow_id, user_id),
    )
    return await cur.fetchone()


async def list_shares(conn: psycopg.AsyncConnection[Any], flow_id: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {SHARE_COLS} FROM flow_shares s JOIN users u ON u.id = s.user_id
            WHERE s.flow_id = %s ORDER BY s.created_at, u.email""",
        (flow_id,),
    )
    return await cur.fetchall()


async def delete_share(conn: psycopg.AsyncConnection[Any], flow_id: Any, user_id: Any) -> bool:
    cur = await conn.execute(
        "DELETE FROM flow_shares WHERE flow_id = %s AND user_id = %s", (flow_id, user_id)
    )
    return cur.rowcount > 0
