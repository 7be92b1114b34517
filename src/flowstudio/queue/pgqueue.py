"""The PostgreSQL queue (QUEUE_BACKEND=postgres): the broker interface over one table, for one machine.

Same contract as `RabbitBroker`: `publish(messages)` returns once the pointers are committed (the
INSERT is the confirm) and wakes consumers with NOTIFY; `deliveries(prefetch)` yields messages with
`.body` and `.ack()`, never more than `prefetch` unacked at once. A consumer takes messages with
`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)` that pushes `visible_at` forward by the
visibility timeout, and `ack()` deletes the row; a consumer that dies before acking lets the message
come back when the timeout passes (RabbitMQ redelivers unacked messages when the channel closes).
Consumers sleep on LISTEN and also poll every `POLL_SECONDS`, so a lost notification (or a
connection that was down) only costs latency. Duplicates are as harmless as with RabbitMQ: a pointer
whose fencing token no longer matches finds nothing to claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from flowstudio.queue.message import StepPointer, encode_message
from flowstudio.store import locks

log = logging.getLogger(__name__)

CHANNEL = "flowstudio_queue"
POLL_SECONDS = 1.0

PUBLISH = """
WITH rows AS (
    INSERT INTO queue_messages (queue, body) SELECT %(queue)s, unnest(%(bodies)s::bytea[])
    RETURNING 1
)
SELECT pg_notify(%(channel)s, %(queue)s), (SELECT count(*) FROM rows)
"""
TAKE = """
UPDATE queue_messages SET visible_at = now() + make_interval(secs => %(visibility)s),
       deliveries = deliveries + 1
WHERE id IN (SELECT id FROM queue_messages
             WHERE queue = %(queue)s AND visible_at <= now()
             ORDER BY visible_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, body, deliveries
"""
ACK = "DELETE FROM queue_messages WHERE id = %s"
DEPTH = "SELECT count(*) AS n FROM queue_messages WHERE queue = %s AND visible_at <= now()"


class PgDelivery:
    """One taken message; `ack()` deletes it (a failed ack leaves a stale pointer that comes back
    after the visibility timeout and finds nothing to claim)."""

    def __init__(self, broker: PostgresBroker, msg_id: int, body: bytes, deliveries: int) -> None:
        self._broker = broker
        self.id = msg_id
        self.body = body
        self.redelivered = deliveries > 1
        self._done = False

    async def ack(self) -> None:
        if self._done:
            return
        self._done = True
        self._broker._unacked.pop(self.id, None)
        try:
            pool = await self._broker._get_pool()
            async with pool.connection() as conn:
                await conn.execute(ACK, (self.id,))
        except psycopg.Error as exc:
            log.warning(
                "ack of queue message %d failed (%r); it will come back stale", self.id, exc
            )


class PostgresBroker:
    def __init__(self, database_url: str, prefix: str, *, visibility_seconds: float = 30.0) -> None:
        self.url = database_url
        self.queue_name = f"{prefix}.steps"
        self.visibility = visibility_seconds
        self._pool: AsyncConnectionPool | None = None
        self._lock = asyncio.Lock()
        # taken, not yet acked: id -> when the message becomes visible again (then it no longer
        # counts against prefetch, as RabbitMQ frees the slot of a message it redelivers)
        self._unacked: dict[int, float] = {}

    def _outstanding(self) -> int:
        now = time.monotonic()
        for msg_id in [i for i, until in self._unacked.items() if until <= now]:
            del self._unacked[msg_id]
        return len(self._unacked)

    async def _get_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = AsyncConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=4,
                        kwargs={"autocommit": True, "application_name": "flowstudio-queue"},
                        check=AsyncConnectionPool.check_connection,
                        open=False,
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool

    async def connect(self, *, wait: bool = False) -> None:
        await self._get_pool()

    async def publish(self, messages: Sequence[StepPointer]) -> None:
        if not messages:
            return
        pool = await self._get_pool()
        async with pool.connection() as conn:
            await conn.execute(
                PUBLISH,
                {
                    "queue": self.queue_name,
                    "bodies": [encode_message(m) for m in messages],
                    "channel": CHANNEL,
                },
            )

    async def _take(self, limit: int) -> list[PgDelivery]:
        pool = await self._get_pool()
        async with pool.connection() as conn:
            cur = await conn.execute(
                TAKE, {"queue": self.queue_name, "limit": limit, "visibility": self.visibility}
            )
            rows: list[Any] = await cur.fetchall()
        until = time.monotonic() + self.visibility
        for r in rows:
            self._unacked[r[0]] = until
        return [PgDelivery(self, r[0], bytes(r[1]), r[2]) for r in rows]

    async def _listen(self, wake: asyncio.Event) -> None:
        """Set `wake` on every notification for this queue (and on every reconnection)."""

        def on_note(payload: str | None) -> None:
            if payload is None or payload == self.queue_name:
                wake.set()

        await locks.wake_on_notify(self.url, CHANNEL, on_note, "flowstudio-queue-listen")

    async def deliveries(self, prefetch: int) -> AsyncIterator[PgDelivery]:
        wake = asyncio.Event()
        listener = asyncio.create_task(self._listen(wake))
        buffer: deque[PgDelivery] = deque()
        delay = 0.5
        try:
            while True:
                if not buffer:
                    free = prefetch - self._outstanding()
                    if free > 0:
                        wake.clear()
                        try:
                            taken = await self._take(free)
                            delay = 0.5
                        except psycopg.Error as exc:
                            log.warning("queue take failed (%s); retrying in %.1fs", exc, delay)
                            await asyncio.sleep(delay)
                            delay = min(delay * 2, 10.0)
                            continue
                        buffer.extend(taken)
                    if not buffer:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(wake.wait(), POLL_SECONDS)
                        continue
                yield buffer.popleft()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def queue_depth(self) -> int:
        pool = await self._get_pool()
        async with pool.connection() as conn:
            cur = await conn.execute(DEPTH, (self.queue_name,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def ping(self) -> bool:
        try:
            pool = await asyncio.wait_for(self._get_pool(), 3)
            async with pool.connection(timeout=3) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # any failure means "not ready"
            return False

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
