"""SQL for flows and their immutable versions (API flow routes call these).

`create_flow` writes the flow and version 1 in one transaction; `update_flow` writes a new immutable
version whenever the definition changes, optionally only from a given `base_version` (restore, in `api/flow_extras.py`, is an update with an old
version's definition, read by `get_version`); duplicate and import are `create_flow` calls.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from flowstudio.store.db import Conn

FLOW_COLS = """id, owner_id, name, description, definition, version, published_version, endpoint_name,
               created_at, updated_at"""
F_FLOW_COLS = ", ".join(f"f.{col.strip()}" for col in FLOW_COLS.split(","))


# Keyword-only like `engine.checkpoint.start_run`: named fields, alike in shape only.
async def create_flow(
    conn: Conn,
    *,
    owner_id: str,
    name: str,
    description: str,
    definition: dict[str, Any],
    endpoint_name: str | None = None,
) -> dict[str, Any]:
    """Raises psycopg.errors.UniqueViolation when the owner already uses `endpoint_name`."""
    async with conn.transaction():
        cur = await conn.execute(
            f"""INSERT INTO flows (owner_id, name, description, definition, version, endpoint_name)
                VALUES (%s, %s, %s, %s, 1, %s) RETURNING {FLOW_COLS}""",
            (owner_id, name, description, Jsonb(definition), endpoint_name),
        )
        flow = await cur.fetchone()
        assert flow is not None
        await conn.execute(
            """INSERT INTO flow_versions (flow_id, version, definition, created_by)
               VALUES (%s, 1, %s, %s)""",
            (flow["id"], Jsonb(definition), owner_id),
        )
    return flow


async def update_flow(
    conn: Conn,
    flow_id: Any,
    *,
    user_id: str,
    name: str | None,
    description: str | None,
    definition: dict[str, Any] | None,
    base_version: int | None = None,
) -> dict[str, Any] | None:
    """Every save of a definition makes a new immutable version.

    With `base_version` the update applies only while the flow is still at that version (optimistic
    concurrency); None then means the flow is gone OR newer (the caller tells them apart)."""
    async with conn.transaction():
        cur = await conn.execute(
            f"""UPDATE flows SET name = coalesce(%s, name),
                       description = coalesce(%s, description),
                       definition = coalesce(%s, definition),
                       version = version + (%s::bool)::int, updated_at = now()
                WHERE id = %s AND deleted_at IS NULL AND (%s::int IS NULL OR version = %s)
                RETURNING {FLOW_COLS}""",
            (
                name,
                description,
                Jsonb(definition) if definition is not None else None,
                definition is not None,
                flow_id,
                base_version,
                base_version,
            ),
        )
        flow = await cur.fetchone()
        if flow is not None and definition is not None:
            await conn.execute(
                """INSERT INTO flow_versions (flow_id, version, definition, created_by)
                   VALUES (%s, %s, %s, %s)""",
                (flow_id, flow["version"], Jsonb(definition), user_id),
            )
    return flow


async def get_flow(conn: Conn, flow_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {FLOW_COLS} FROM flows WHERE id = %s AND deleted_at IS NULL", (flow_id,)
    )
    return await cur.fetchone()


async def delete_flow(conn: Conn, flow_id: Any) -> None:
    await conn.execute("UPDATE flows SET deleted_at = now() WHERE id = %s", (flow_id,))


async def list_versions(conn: Conn, flow_id: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT version, created_at, created_by FROM flow_versions WHERE flow_id = %s
           ORDER BY version DESC""",
        (flow_id,),
    )
    return await cur.fetchall()


async def get_version(conn: Conn, flow_id: Any, version: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        """SELECT version, definition, created_at, created_by FROM flow_versions
           WHERE flow_id = %s AND version = %s""",
        (flow_id, version),
    )
    return await cur.fetchone()


async def list_visible_flows(conn: Conn, user_id: str, everything: bool) -> list[dict[str, Any]]:
    """Own flows and flows shared with `user_id` (all flows when `everything`, for admins)."""
    cur = await conn.execute(
        f"""SELECT {F_FLOW_COLS}, s.permission AS share_permission
            FROM flows f LEFT JOIN flow_shares s ON s.flow_id = f.id AND s.user_id = %(me)s
            WHERE f.deleted_at IS NULL
              AND (%(all)s OR f.owner_id = %(me)s OR s.user_id IS NOT NULL)
            ORDER BY f.updated_at DESC LIMIT 1000""",
        {"me": user_id, "all": everything},
    )
    return await cur.fetchall()


async def get_flow_for(conn: Conn, flow_id: Any, user_id: str) -> dict[str, Any] | None:
    """The flow with `share_permission` ('run' | 'view' | None) of `user_id` on it."""
    cur = await conn.execute(
        f"""SELECT {F_FLOW_COLS}, s.permission AS share_permission
            FROM flows f LEFT JOIN flow_shares s ON s.flow_id = f.id AND s.user_id = %s
            WHERE f.id = %s AND f.deleted_at IS NULL""",
        (user_id, flow_id),
    )
    return await cur.fetchone()


async def set_published(conn: Conn, flow_id: Any, version: int | None) -> dict[str, Any] | None:
    """Pin (or with None clear) the published version; None when the flow or version is gone."""
    cur = await conn.execute(
        f"""UPDATE flows SET published_version = %(v)s, updated_at = now()
            WHERE id = %(id)s AND deleted_at IS NULL AND (%(v)s::int IS NULL OR %(v)s <= version)
            RETURNING {FLOW_COLS}""",
        {"id": flow_id, "v": version},
    )
    return await cur.fetchone()


async def set_endpoint_name(conn: Conn, flow_id: Any, endpoint_name: str | None) -> None:
    """Raises psycopg.errors.UniqueViolation when the owner already uses the name."""
    await conn.execute(
        "UPDATE flows SET endpoint_name = %s, updated_at = now() WHERE id = %s",
        (endpoint_name, flow_id),
    )


async def flow_id_by_endpoint_name(conn: Conn, owner_id: str, endpoint_name: str) -> Any | None:
    cur = await conn.execute(
        """SELECT id FROM flows
           WHERE owner_id = %s AND endpoint_name = %s AND deleted_at IS NULL""",
        (owner_id, endpoint_name),
    )
    row = await cur.fetchone()
    return row["id"] if row else None
