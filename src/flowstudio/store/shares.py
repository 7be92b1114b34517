"""SQL for flow shares (who besides the owner may run or read a flow) and secret bindings.

`api/shares.py` calls `upsert_share` (share again = change the permission and grant the version
published now), `accept_share` (the shared user takes the version published now), `list_shares` and
`delete_share`; the access checks read a caller's share together with the flow in one query
(`store.flows.get_flow_for`, `list_visible_flows`) and `get_share` for the granted version of a run.
`api/flow_secrets.py` calls `bind_secret` / `unbind_secret` / `bound_secrets`: the names of the
owner's secrets a flow may use when someone else runs it (`worker/secret_values.py` reads them).
`subflow_access` tells the worker (`worker/items.py`) whether a run's owner may run another flow as a
subflow, as a typed `SubflowAccess` row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.rows import class_row

from flowstudio.store.db import Conn

SHARE_COLS = (
    "s.flow_id, s.user_id, u.email, u.name, s.permission, s.version, s.created_at, s.updated_at"
)


async def upsert_share(
    conn: Conn, flow_id: Any, user_id: Any, permission: str, by: str
) -> tuple[dict[str, Any], bool]:
    """The share row and whether it is new (False: an existing share got `permission`)."""
    cur = await conn.execute(
        """INSERT INTO flow_shares (flow_id, user_id, permission, created_by, version)
           VALUES (%(f)s, %(u)s, %(p)s, %(by)s,
                   (SELECT published_version FROM flows WHERE id = %(f)s))
           ON CONFLICT (flow_id, user_id) DO UPDATE
               SET permission = EXCLUDED.permission, version = EXCLUDED.version,
                   updated_at = now()
           RETURNING (xmax = 0) AS created""",
        {"f": flow_id, "u": user_id, "p": permission, "by": by},
    )
    row = await cur.fetchone()
    assert row is not None
    share = await get_share(conn, flow_id, user_id)
    assert share is not None
    return share, bool(row["created"])


async def get_share(conn: Conn, flow_id: Any, user_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"""SELECT {SHARE_COLS} FROM flow_shares s JOIN users u ON u.id = s.user_id
            WHERE s.flow_id = %s AND s.user_id = %s""",
        (flow_id, user_id),
    )
    return await cur.fetchone()


async def list_shares(conn: Conn, flow_id: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {SHARE_COLS} FROM flow_shares s JOIN users u ON u.id = s.user_id
            WHERE s.flow_id = %s ORDER BY s.created_at, u.email""",
        (flow_id,),
    )
    return await cur.fetchall()


async def delete_share(conn: Conn, flow_id: Any, user_id: Any) -> bool:
    cur = await conn.execute(
        "DELETE FROM flow_shares WHERE flow_id = %s AND user_id = %s", (flow_id, user_id)
    )
    return cur.rowcount > 0


async def accept_share(conn: Conn, flow_id: Any, user_id: Any) -> dict[str, Any] | None:
    """The caller's share now granted for the flow's published version (None: no share)."""
    await conn.execute(
        """UPDATE flow_shares s SET version = f.published_version, updated_at = now()
           FROM flows f WHERE f.id = s.flow_id AND s.flow_id = %s AND s.user_id = %s""",
        (flow_id, user_id),
    )
    return await get_share(conn, flow_id, user_id)


async def bound_secrets(conn: Conn, flow_id: Any) -> list[str]:
    cur = await conn.execute(
        "SELECT name FROM flow_secret_bindings WHERE flow_id = %s ORDER BY name", (flow_id,)
    )
    return [r["name"] for r in await cur.fetchall()]


async def bind_secret(conn: Conn, flow_id: Any, name: str, by: str) -> bool:
    """True when the binding is new."""
    cur = await conn.execute(
        """INSERT INTO flow_secret_bindings (flow_id, name, created_by) VALUES (%s, %s, %s)
           ON CONFLICT DO NOTHING""",
        (flow_id, name, by),
    )
    return cur.rowcount > 0


async def unbind_secret(conn: Conn, flow_id: Any, name: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM flow_secret_bindings WHERE flow_id = %s AND name = %s", (flow_id, name)
    )
    return cur.rowcount > 0


@dataclass(frozen=True)
class SubflowAccess:
    """What a run's owner may run of another flow (see `subflow_access`)."""

    version: int  # the published version, else the latest
    latest: int
    published_version: int | None
    edits: bool  # the owner of the flow, or an admin
    granted: int | None  # the version a 'run' share grants, if any
    shared: bool  # a 'run' share exists


# The flow's versions and the user's rights over it (own/admin, or a 'run' share and its version).
SUBFLOW_ACCESS = """SELECT coalesce(f.published_version, f.version) AS version, f.version AS latest,
       f.published_version,
       f.owner_id = %(user)s::uuid OR 'admin' = ANY(u.roles) AS edits,
       (SELECT sh.version FROM flow_shares sh WHERE sh.flow_id = f.id
          AND sh.user_id = %(user)s::uuid AND sh.permission = 'run') AS granted,
       EXISTS (SELECT 1 FROM flow_shares sh WHERE sh.flow_id = f.id
               AND sh.user_id = %(user)s::uuid AND sh.permission = 'run') AS shared
    FROM flows f, users u
    WHERE f.id = %(flow)s::uuid AND f.deleted_at IS NULL AND u.id = %(user)s::uuid"""


async def subflow_access(
    conn: Conn, user_id: str | UUID, flow_id: str | UUID
) -> SubflowAccess | None:
    """The user's access to a live flow; None when the flow or the user does not exist."""
    async with conn.cursor(row_factory=class_row(SubflowAccess)) as cur:
        await cur.execute(SUBFLOW_ACCESS, {"user": user_id, "flow": flow_id})
        return await cur.fetchone()
