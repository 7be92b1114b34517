"""The broker: RabbitMQ through aio-pika, carrying pointers (run id, step id, fencing token) only.

`RabbitBroker.connect()` opens a robust connection (it reconnects by itself after a broker restart or a
cut connection) with a publisher-confirms channel and declares one durable queue `{prefix}.steps`.
The connection's AMQP heartbeat (`heartbeat`, AMQP_HEARTBEAT_SECONDS, unless the URL sets one) bounds
how long a frozen consumer (SIGSTOP, a paused VM, a blocked event loop) keeps the pointers RabbitMQ
handed it ahead of its free slots (the prefetch): RabbitMQ closes a connection whose peer sent no
heartbeat for about that long and requeues its unacked pointers to the live consumers.
`publish(messages)` returns only after the broker confirmed every persistent message, or raises.
`deliveries(prefetch)` yields incoming messages on a separate channel with the given prefetch; the
worker acks each after its claim commits. `encode/decode_message` (`queue/message.py`) fix the message body shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from flowstudio.queue.message import StepMessage, StepPointer, decode_message, encode_message

log = logging.getLogger(__name__)
__all__ = ["RabbitBroker", "StepMessage", "decode_message", "encode_message"]


class RabbitBroker:
    def __init__(self, url: str, prefix: str, *, heartbeat: int | None = None) -> None:
        self.url = url
        self.heartbeat = heartbeat
        self.queue_name = f"{prefix}.steps"
        self._conn: AbstractRobustConnection | None = None
        self._pub: Any = None
        self._lock = asyncio.Lock()

    async def connect(self, *, wait: bool = False) -> None:
        """Connect once; later outages are the robust connection's business. With `wait`, a broker
        that is down at start-up is retried with backoff (consumers), else the error is raised at
        once (publishers: their committed outbox rows wait for the relay)."""
        if self._conn is not None:
            return
        async with self._lock:
            if self._conn is not None:
                return
            delay = 0.5
            while True:
                try:
                    conn = await aio_pika.connect_robust(
                        self.url,
                        client_properties={"connection_name": f"flowstudio:{self.queue_name}"},
                        **self._heartbeat_option(),
                    )
                    break
                except (aiormq.exceptions.AMQPConnectionError, OSError) as exc:
                    if not wait:
                        raise
                    log.warning("broker unavailable (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            channel = await conn.channel(publisher_confirms=True)
            await channel.declare_queue(self.queue_name, durable=True)
            self._pub = channel
            self._conn = conn

    def _heartbeat_option(self) -> dict[str, Any]:
        """`heartbeat=` for aio-pika (its keywords override the URL's query), unless the URL has one."""
        if self.heartbeat is None or "heartbeat" in parse_qs(urlsplit(self.url).query):
            return {}
        return {"heartbeat": self.heartbeat}

    async def publish(self, messages: Sequence[StepPointer]) -> None:
        if not messages:
            return
        await self.connect()
        exchange = self._pub.default_exchange
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        encode_message(m),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                    ),
                    routing_key=self.queue_name,
                )
                for m in messages
            )
        )

    async def deliveries(self, prefetch: int) -> AsyncIterator[AbstractIncomingMessage]:
        await self.connect(wait=True)
        assert self._conn is not None
        channel = await self._conn.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(self.queue_name, durable=True)
        async with queue.iterator() as it:
            async for message in it:
                yield message

    async def queue_depth(self) -> int:
        await self.connect()
        q = await self._pub.declare_queue(self.queue_name, durable=True, passive=True)
        # aio-pika caches the channel's Queue object (its declaration_result is from the first
        # declare): declare again to read the broker's current count.
        declared = await q.declare()
        return int(declared.message_count or 0)

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self.connect(), 3)
            return self._conn is not None and not self._conn.is_closed
        except Exception:  # any connection failure means "not ready"
            return False

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
