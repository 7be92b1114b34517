"""SQL of the process registry (`processes`) and of worker liveness locks.

`runtime.py` registers each long-running process, refreshes its heartbeat (with its pool usage) and
deletes its row on exit; rows silent for an hour are swept by every heartbeat. `worker/liveness.py`
holds a session advisory lock per worker id for its whole life (`take_liveness_lock`) and checks its
connection with `locks.ping` (`engine/recovery.py` asks `pg_locks` who still holds one).
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from flowstudio.store.db import Conn

# Registers a process (or refreshes the heartbeat of an id registered before).
REGISTER = """INSERT INTO processes (id, kind, hostname, pid, info) VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()"""
# Refreshes a process's heartbeat and its reported info.
HEARTBEAT = "UPDATE processes SET heartbeat_at = now(), info = %s WHERE id = %s"
# Forgets processes whose heartbeat stopped an hour ago (crashed without unregistering).
SWEEP_SILENT = "DELETE FROM processes WHERE heartbeat_at < now() - interval '1 hour'"
# Forgets one process (clean shutdown).
UNREGISTER = "DELETE FROM processes WHERE id = %s"
# Blocks until this session holds the liveness lock of a worker id (released when it disconnects).
LIVENESS_LOCK = "SELECT pg_advisory_lock(hashtextextended(%s, 0))"


async def register(
    conn: Conn, process_id: str, kind: str, hostname: str, pid: int, info: dict[str, Any]
) -> None:
    """Insert the process's row (or refresh its heartbeat if the id is known)."""
    await conn.execute(REGISTER, (process_id, kind, hostname, pid, Jsonb(info)))


async def heartbeat(conn: Conn, process_id: str, info: dict[str, Any]) -> bool:
    """Refresh the heartbeat and info; False when the row is gone (then register again)."""
    cur = await conn.execute(HEARTBEAT, (Jsonb(info), process_id))
    return cur.rowcount > 0


async def sweep_silent(conn: Conn) -> None:
    """Delete rows of processes silent for an hour."""
    await conn.execute(SWEEP_SILENT)


async def unregister(conn: Conn, process_id: str) -> None:
    """Delete the process's row."""
    await conn.execute(UNREGISTER, (process_id,))


async def take_liveness_lock(conn: Conn, worker_id: str) -> None:
    """Hold the worker's liveness lock on this connection's session until it closes."""
    await conn.execute(LIVENESS_LOCK, (worker_id,))
