"""Live run events: one PostgreSQL LISTEN per API process, fanned out to SSE streams and waiters.

`EventHub.run()` (started by the app lifespan) holds a connection LISTENing on `fs_run_events`
(checkpoint transactions NOTIFY `run_id:seq` on commit) and wakes the subscribers of that run; after a
reconnect it wakes everyone, since notifications may have been missed. `subscribe(run_id)` returns an
event to wait on; callers subscribe BEFORE reading the database, so no commit can slip between.
`stream_run_events()` replays the event log from a sequence number (Last-Event-ID) and then follows it
live, with keepalive comments, ending after the run is terminal. `wait_terminal()` serves sync runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import psycopg
from litestar.response import ServerSentEvent, ServerSentEventMessage
from psycopg_pool import AsyncConnectionPool

from flowstudio.engine.states import RUN_TERMINAL
from flowstudio.settings import Settings
from flowstudio.store import runs as store
from flowstudio.store.db import connect

log = logging.getLogger(__name__)
KEEPALIVE_S = 10.0


class EventHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.waiters: dict[str, set[anyio.Event]] = {}

    def subscribe(self, run_id: str) -> anyio.Event:
        event = anyio.Event()
        self.waiters.setdefault(run_id, set()).add(event)
        return event

    def unsubscribe(self, run_id: str, event: anyio.Event) -> None:
        waiters = self.waiters.get(run_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self.waiters[run_id]

    def _wake(self, run_id: str) -> None:
        for event in self.waiters.pop(run_id, set()):
            event.set()

    async def run(self) -> None:
        while True:
            try:
                conn = await connect(self.settings, name="flowstudio-events")
                try:
                    await conn.execute("LISTEN fs_run_events")
                    for run_id in list(self.waiters):
                        self._wake(run_id)
                    async for note in conn.notifies():
                        self._wake(note.payload.split(":", 1)[0])
                finally:
                    await conn.close()
            except psycopg.OperationalError as exc:
                log.warning("event listener lost its connection (%s); reconnecting", exc)
                await anyio.sleep(1.0)

    async def wait(self, run_id: str, event: anyio.Event, seconds: float) -> bool:
        """True if woken, False on timeout."""
        try:
            with anyio.move_on_after(seconds):
                await event.wait()
                return True
            return False
        finally:
            self.unsubscribe(run_id, event)


class EventStream(ServerSentEvent):
    """An SSE response that keeps `text/event-stream` even from a handler whose default media type
    is JSON (a handler that answers either JSON or a stream, like the sync run)."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = "text/event-stream"
        return super().to_asgi_response(*args, **kwargs)


def event_json(row: dict[str, Any]) -> str:
    out = {**row, "at": row["at"].isoformat()}
    return msgspec.json.encode(out).decode()


async def stream_run_events(
    pool: AsyncConnectionPool, hub: EventHub, run_id: str, after_seq: int
) -> AsyncIterator[ServerSentEventMessage]:
    last = after_seq
    while True:
        woken = hub.subscribe(run_id)
        async with pool.connection() as conn:
            run = await store.get_run(conn, run_id)
            rows = await store.get_events(conn, run_id, last, limit=500)
        for row in rows:
            last = row["seq"]
            yield ServerSentEventMessage(data=event_json(row), event=row["kind"], id=row["seq"])
        if run is None or (run["status"] in RUN_TERMINAL and len(rows) < 500):
            hub.unsubscribe(run_id, woken)
            status = run["status"] if run else "deleted"
            yield ServerSentEventMessage(
                data=msgspec.json.encode({"status": status}).decode(), event="end", id=last
            )
            return
        if rows:
            hub.unsubscribe(run_id, woken)
            continue
        if not await hub.wait(run_id, woken, KEEPALIVE_S):
            yield ServerSentEventMessage(comment="keepalive")


async def wait_terminal(
    pool: AsyncConnectionPool, hub: EventHub, run_id: str, seconds: float
) -> dict[str, Any]:
    """The run row once terminal, or as it is when `seconds` run out."""
    with anyio.move_on_after(seconds):
        while True:
            woken = hub.subscribe(run_id)
            async with pool.connection() as conn:
                run = await store.get_run(conn, run_id)
            assert run is not None
            if run["status"] in RUN_TERMINAL:
                hub.unsubscribe(run_id, woken)
                return run
            await hub.wait(run_id, woken, KEEPALIVE_S)
    async with pool.connection() as conn:
        run = await store.get_run(conn, run_id)
    assert run is not None
    return run
