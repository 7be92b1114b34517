"""SQL for flows and their immutable versions (API flow routes call these).

`create_flow` writes the flow and version 1 in one transaction; `update_flow` writes a new immutable
version whenever the definition changes (restore, in `api/flow_extras.py`, is an update with an old
version's definition, read by `get_version`); duplicate and import are `create_flow` calls.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

FLOW_COLS = "id, owner_id, name, description, definition, version, created_at, updated_at"


async def create_flow(
    conn: psycopg.AsyncConnection[Any],
    *,
    owner_id: str,
    name: str,
    description: str,
    definition: dict[str, Any],
) -> dict[str, Any]:
    async with conn.transaction():
        cur = await conn.execute(
            f"""INSERT INTO flows (owner_id, name, description, definition, version)
                VALUES (%s, %s, %s, %s, 1) RETURNING {FLOW_COLS}""",
            (owner_id, name, description, Jsonb(definition)),
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
    conn: psycopg.AsyncConnection[Any],
    flow_id: Any,
    *,
    user_id: str,
    name: str | None,
    description: str | None,
    definition: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Every save of a definition makes a new immutable version."""
    async with conn.transaction():
        cur = await conn.execute(
            f"""UPDATE flows SET name = coalesce(%s, name),
                       description = coalesce(%s, description),
                       definition = coalesce(%s, definition),
                       version = version + (%s::bool)::int, updated_at = now()
                WHERE id = %s AND deleted_at IS NULL RETURNING {FLOW_COLS}""",
            (
                name,
                description,
                Jsonb(definition) if definition is not None else None,
                definition is not None,
                flow_id,
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


async def get_flow(conn: psycopg.AsyncConnection[Any], flow_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {FLOW_COLS} FROM flows WHERE id = %s AND deleted_at IS NULL", (flow_id,)
    )
    return await cur.fetchone()


async def list_flows(
    conn: psycopg.AsyncConnection[Any], owner_id: str | None
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {FLOW_COLS} FROM flows WHERE deleted_at IS NULL
            AND (%s::uuid IS NULL OR owner_id = %s::uuid) ORDER BY updated_at DESC LIMIT 1000""",
        (owner_id, owner_id),
    )
    return await cur.fetchall()


async def delete_flow(conn: psycopg.AsyncConnection[Any], flow_id: Any) -> None:
    await conn.execute("UPDATE flows SET deleted_at = now() WHERE id = %s", (flow_id,))


async def list_versions(conn: psycopg.AsyncConnection[Any], flow_id: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT version, created_at, created_by FROM flow_versions WHERE flow_id = %s
           ORDER BY version DESC""",
        (flow_id,),
    )
    return await cur.fetchall()


async def get_version(
    conn: psycopg.AsyncConnection[Any], flow_id: Any, version: int
) -> dict[str, Any] | None:
    cur = await conn.execute(
        """SELECT version, definition, created_at, created_by FROM flow_versions
           WHERE flow_id = %s AND version = %s""",
        (flow_id, version),
    )
    return await cur.fetchone()
