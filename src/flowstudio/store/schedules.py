"""SQL for cron schedules (API schedule routes call these; the orchestrator fires them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from flowstudio.store.db import Conn

COLS = """id, flow_id, owner_id, cron, timezone, inputs, catchup, max_catchup, enabled,
          next_fire_at, last_fired_at, created_at, updated_at"""


async def create(
    conn: Conn,
    *,
    flow_id: Any,
    owner_id: str,
    cron: str,
    timezone: str,
    inputs: dict[str, Any],
    catchup: str,
    max_catchup: int,
    enabled: bool,
    next_fire_at: datetime,
) -> dict[str, Any]:
    cur = await conn.execute(
        f"""INSERT INTO schedules (flow_id, owner_id, cron, timezone, inputs, catchup, max_catchup,
                                   enabled, next_fire_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {COLS}""",
        (
            flow_id,
            owner_id,
            cron,
            timezone,
            Jsonb(inputs),
            catchup,
            max_catchup,
            enabled,
            next_fire_at,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get(conn: Conn, schedule_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {COLS} FROM schedules WHERE id = %s", (schedule_id,))
    return await cur.fetchone()


async def list_for_flow(conn: Conn, flow_id: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {COLS} FROM schedules WHERE flow_id = %s ORDER BY created_at", (flow_id,)
    )
    return await cur.fetchall()


async def update(conn: Conn, schedule_id: Any, fields: dict[str, Any]) -> dict[str, Any] | None:
    if "inputs" in fields:
        fields = {**fields, "inputs": Jsonb(fields["inputs"])}
    sets = ", ".join(f"{k} = %({k})s" for k in fields)
    cur = await conn.execute(
        f"UPDATE schedules SET {sets}, updated_at = now() WHERE id = %(id)s RETURNING {COLS}",
        {**fields, "id": schedule_id},
    )
    return await cur.fetchone()


async def delete(conn: Conn, schedule_id: Any) -> None:
    await conn.execute("DELETE FROM schedules WHERE id = %s", (schedule_id,))


async def fires(conn: Conn, schedule_id: Any, limit: int = 100) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT fire_time, run_id, fired_at, skipped_reason FROM schedule_fires
           WHERE schedule_id = %s
           ORDER BY fire_time DESC LIMIT %s""",
        (schedule_id, limit),
    )
    return await cur.fetchall()
