"""LISTEN/NOTIFY in tests: a listening connection, and what it heard read up to a marker.

`listening(url, channel)` opens an autocommit connection LISTENing on `channel`. `heard(conn,
listener, channel)` sends a unique marker on `channel` from `conn` and returns every payload the
listener got before it (notifications arrive in commit order), so "nothing was sent" is read up to
the marker, never by waiting a while.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg


@asynccontextmanager
async def listening(url: str, channel: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute(f"LISTEN {channel}")
        yield conn
    finally:
        await conn.close()


async def heard(
    conn: psycopg.AsyncConnection[Any], listener: psycopg.AsyncConnection[Any], channel: str
) -> list[str]:
    """The payloads sent on `channel` since the last look."""
    marker = f"marker-{uuid.uuid4()}"
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, marker))
    got: list[str] = []
    async for note in listener.notifies(timeout=30):
        if note.payload == marker:
            return got
        got.append(note.payload)
    raise AssertionError(f"the marker never arrived; heard {got}")
