"""Small connection-level statements: advisory locks, a ping, the database clock, LISTEN/NOTIFY.

`session_lock(conn, lock_class, key)` holds a two-key session advisory lock (class, hashtext(key))
while the block runs; it says "a live process is doing this" and vanishes with the connection
(batch loaders: `engine/batches.py`; one batch upload per user at a time: `api/batches.py`).
`ping(conn)` proves a connection answers (health checks, the worker's liveness connection);
`db_now(conn)` is the database's clock (schedules compute fire times against it); `listen(conn,
channel)` subscribes a connection to NOTIFYs (the API's event hub); `notify(conn, channel,
payload)` sends one (the worker's live LLM tokens, `worker/execute.notifier`; a batch ready to
start, `engine/batches.py`); `wake_on_notify(url, channel, wake)` keeps a connection of its own
listening and calls `wake(payload)` on each NOTIFY, and once on every (re)connection (the
PostgreSQL queue's consumers, the batch dispatcher).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime

import anyio
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


async def wake_on_notify(
    url: str, channel: str, wake: Callable[[str | None], None], name: str
) -> None:
    """Forever: LISTEN on `channel` over a connection of its own (`application_name` `name`) and call
    `wake(payload)` on every notification, and `wake(None)` on every (re)connection (anything sent
    while nobody listened); a lost connection is retried with backoff (0.5 s doubling to 10 s)."""
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, application_name=name
            ) as conn:
                await listen(conn, channel)
                delay = 0.5
                wake(None)
                async for note in conn.notifies():
                    wake(note.payload)
        except psycopg.Error as exc:
            logging.getLogger(__name__).warning(
                "LISTEN %s connection lost (%s); retrying in %.1fs", channel, exc, delay
            )
            await anyio.sleep(delay)
            delay = min(delay * 2, 10.0)
