"""Small connection-level statements: advisory locks, a ping, the database clock, LISTEN/NOTIFY.

`session_lock(conn, lock_class, key)` holds a two-key session advisory lock (class, hashtext(key))
while the block runs; it says "a live process is doing this" and vanishes with the connection
(batch loaders: `engine/batches.py`; one batch upload per user at a time: `api/batches.py`).
`ping(conn)` proves a connection answers (health checks, the worker's liveness connection);
`db_now(conn)` is the database's clock (schedules compute fire times against it); `listen(conn,
channel)` subscribes a connection to NOTIFYs (the API's event hub); `notify(conn, channel,
payload)` sends one (the worker's live LLM tokens, `worker/execute.notifier`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime

import psycopg
from psycopg import sql

from flowstudio.store.db import Conn

# Blocks until this session holds the lock (class, hashtext(key)).
SESSION_LOCK = "SELECT pg_advisory_lock(%s, hashtext(%s))"
# Releases it (a no-op warning when not held).
SESSION_UNLOCK = "SELECT pg_advisory_unlock(%s, hashtext(%s))"
# A round trip that proves the connection answers.
PING = "SELECT 1"
# The database's current transaction time.
DB_NOW = "SELECT now() AS now"


@asynccontextmanager
async def session_lock(conn: Conn, lock_class: int, key: str) -> AsyncIterator[None]:
    """Hold the session advisory lock (lock_class, hashtext(key)) for the block."""
    await conn.execute(SESSION_LOCK, (lock_class, key))
    try:
        yield
    finally:
        with suppress(psycopg.Error):  # connection gone: so is the lock
            await conn.execute(SESSION_UNLOCK, (lock_class, key))


async def ping(conn: Conn) -> None:
    """Raise psycopg.Error when the connection no longer answers."""
    await conn.execute(PING)


async def db_now(conn: Conn) -> datetime:
    """The database's `now()`."""
    cur = await conn.execute(DB_NOW)
    row = await cur.fetchone()
    assert row is not None
    return row["now"] if isinstance(row, dict) else row[0]


async def listen(conn: Conn, channel: str) -> None:
    """LISTEN on `channel` (quoted as an identifier)."""
    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


async def notify(conn: Conn, channel: str, payload: str) -> None:
    """pg_notify(`channel`, `payload`): an ephemeral message to the channel's listeners."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
