"""Live run events: one PostgreSQL LISTEN per API process, fanned out to SSE streams and waiters.

`EventHub.run()` (started by the app lifespan) holds a connection LISTENing on `fs_run_events`
(checkpoint transactions NOTIFY `run_id:seq` on commit) and wakes the subscribers of that run;
after a reconnect it wakes everyone, since notifications may have been missed. `subscribe(run_id)`
returns an event to wait on; callers subscribe BEFORE reading the database, so no commit can slip
between. `stream_run_events()` replays the event log from a sequence number (Last-Event-ID) and
then follows it live, with keepalive comments, ending after the run is terminal. `wait_terminal()`
serves sync runs. Only a watched run's commits NOTIFY (migration 0034: a NOTIFY serializes commits
database-wide), so both watch the run (`store.runs.watch_run`, for WATCH_S) after subscribing and
before reading it, and renew the watch after each KEEPALIVE_S while they follow it (`Watch`; a
stream reads the run again at least every KEEPALIVE_S, even while LLM tokens keep it busy).
LLM tokens arrive on `fs_run_tokens` (pg_notify from the worker, never stored): the hub pushes them
to the run's `TokenFeed`s and `stream_run_events` yields them as `token` events without an id (live
only).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anyio
import msgspec
import psycopg
from litestar.response import ServerSentEvent, ServerSentEventMessage

from flowstudio.engine.states import RUN_TERMINAL
from flowstudio.settings import Settings
from flowstudio.store import locks
from flowstudio.store import runs as store
from flowstudio.store.db import Conn, Pool, connect

log = logging.getLogger(__name__)
KEEPALIVE_S = 10.0
WATCH_S = 3 * KEEPALIVE_S  # a follower's watch of a run; renewed at a read KEEPALIVE_S after
TOKEN_CHANNEL = "fs_run_tokens"  # ephemeral LLM tokens: {run_id, node_id, seq, text, ...}


class TokenFeed:
    """LLM tokens of one run for one SSE stream; bounded, so a slow client drops the oldest."""

    def __init__(self) -> None:
        self.items: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.ready = anyio.Event()

    def push(self, item: dict[str, Any]) -> None:
        self.items.append(item)
        self.ready.set()

    def drain(self) -> list[ServerSentEventMessage]:
        items, self.ready = list(self.items), anyio.Event()
        self.items.clear()  # no `id`: tokens are live only and must not move Last-Event-ID
        return [ServerSentEventMessage(data=json.dumps(t), event="token") for t in items]


T = TypeVar("T")


class Watch:
    """A follower's watch of one run: `renew(conn)` before each read of the run renews it in the
    database when KEEPALIVE_S have passed since the last renewal (one UPDATE per keepalive, not
    per event)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.renewed = -math.inf

    async def renew(self, conn: Conn) -> None:
        if time.monotonic() - self.renewed >= KEEPALIVE_S:
            await store.watch_run(conn, self.run_id, WATCH_S)
            self.renewed = time.monotonic()


def _discard(registry: dict[str, set[T]], key: str, member: T) -> None:
    """Remove `member` from `registry[key]`, and the key with its last member."""
    members = registry.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del registry[key]


class EventHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.waiters: dict[str, set[anyio.Event]] = {}
        self.token_feeds: dict[str, set[TokenFeed]] = {}

    def subscribe_tokens(self, run_id: str) -> TokenFeed:
        feed = TokenFeed()
        self.token_feeds.setdefault(run_id, set()).add(feed)
        return feed

    def unsubscribe_tokens(self, run_id: str, feed: TokenFeed) -> None:
        _discard(self.token_feeds, run_id, feed)

    def _push_token(self, payload: str) -> None:
        if not self.token_feeds:
            return
        try:
            token = json.loads(payload)
            feeds = self.token_feeds.get(str(token.pop("run_id")), ())
        except (ValueError, KeyError, AttributeError):
            return
        for feed in feeds:
            feed.push(token)

    def subscribe(self, run_id: str) -> anyio.Event:
        event = anyio.Event()
        self.waiters.setdefault(run_id, set()).add(event)
        return event

    def unsubscribe(self, run_id: str, event: anyio.Event) -> None:
        _discard(self.waiters, run_id, event)

    def _wake(self, run_id: str) -> None:
        for event in self.waiters.pop(run_id, set()):
            event.set()

    async def run(self) -> None:
        while True:
            try:
                conn = await connect(self.settings, name="flowstudio-events")
                try:
                    await locks.listen(conn, "fs_run_events")
                    await locks.listen(conn, TOKEN_CHANNEL)
                    for run_id in list(self.waiters):
                        self._wake(run_id)
                    async for note in conn.notifies():
                        if note.channel == TOKEN_CHANNEL:
                            self._push_token(note.payload)
                        else:
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


class RunEventOut(msgspec.Struct, kw_only=True):
    """One row of a run's event log: the `data:` of its SSE events (`event:` is `kind`)."""

    seq: int
    at: str  # ISO 8601, as Python's isoformat() writes it
    kind: str
    step_id: int | None
    node_id: str | None
    item_index: int | None
    attempt: int | None
    from_status: str | None
    to_status: str | None
    data: Any  # free-form per kind


def event_json(row: dict[str, Any]) -> str:
    out = msgspec.convert({**row, "at": row["at"].isoformat()}, RunEventOut)
    return msgspec.json.encode(out).decode()


async def _wait_rows_or_tokens(woken: anyio.Event, feed: TokenFeed, seconds: float) -> str:
    """'rows' when the run's log moved, 'tokens' when tokens are pending, '' after `seconds`; ''
    at once once `seconds` ran out, tokens pending or not: a client slower than the tokens always
    has some pending, and the caller must still go back to its read (and renew its watch)."""
    if seconds <= 0:
        return ""
    if feed.items:
        return "tokens"
    result = ""
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:

            async def watch(event: anyio.Event, name: str) -> None:
                nonlocal result
                await event.wait()
                result = result or name
                tg.cancel_scope.cancel()

            tg.start_soon(watch, woken, "rows")
            tg.start_soon(watch, feed.ready, "tokens")
    return result


async def stream_run_events(
    pool: Pool, hub: EventHub, run_id: str, after_seq: int
) -> AsyncIterator[ServerSentEventMessage]:
    feed = hub.subscribe_tokens(run_id)
    try:
        async for message in _follow_run(pool, hub, run_id, after_seq, feed):
            yield message
    finally:
        hub.unsubscribe_tokens(run_id, feed)


async def _follow_run(
    pool: Pool, hub: EventHub, run_id: str, after_seq: int, feed: TokenFeed
) -> AsyncIterator[ServerSentEventMessage]:
    last, watch = after_seq, Watch(run_id)
    while True:
        woken = hub.subscribe(run_id)
        for token in feed.drain():  # tokens published before the rows read next
            yield token
        async with pool.connection() as conn:
            await watch.renew(conn)  # committed (autocommit) before the reads below
            run = await store.get_run(conn, run_id)
            rows = await store.get_events(conn, run_id, last, limit=500)
        read_at = time.monotonic()
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
        # back to the read (and the watch's renewal) at least every KEEPALIVE_S, tokens or not: a
        # steady token stream must not let the watch run out (then commits would not NOTIFY)
        streamed = False
        while (
            why := await _wait_rows_or_tokens(woken, feed, read_at + KEEPALIVE_S - time.monotonic())
        ) == "tokens":
            streamed = True
            for token in feed.drain():
                yield token
        hub.unsubscribe(run_id, woken)
        if not why and not streamed:
            yield ServerSentEventMessage(comment="keepalive")


async def wait_terminal(pool: Pool, hub: EventHub, run_id: str, seconds: float) -> dict[str, Any]:
    """The run row once terminal, or as it is when `seconds` run out."""
    watch = Watch(run_id)
    with anyio.move_on_after(seconds):
        while True:
            woken = hub.subscribe(run_id)
            async with pool.connection() as conn:
                await watch.renew(conn)
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
