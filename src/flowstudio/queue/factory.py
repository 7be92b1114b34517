"""Which queue carries step pointers: `make_broker(settings)` picks RabbitMQ or the PostgreSQL queue.

QUEUE_BACKEND=rabbitmq (the default when AMQP_URL is set) scales workers out across machines;
QUEUE_BACKEND=postgres (the default otherwise) needs nothing but the database, for one machine or
`flowstudio up` on the embedded PostgreSQL. Both satisfy `Broker`: publish with confirms, deliveries
with ack after the claim commits, a depth for the ops page and a ping for readiness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from flowstudio.queue.broker import RabbitBroker
from flowstudio.queue.message import StepPointer
from flowstudio.queue.pgqueue import PostgresBroker
from flowstudio.settings import Settings


class Delivery(Protocol):
    body: bytes

    async def ack(self) -> None: ...


class Broker(Protocol):
    queue_name: str

    async def connect(self, *, wait: bool = False) -> None: ...
    async def publish(self, messages: Sequence[StepPointer]) -> None: ...
    def deliveries(self, prefetch: int) -> AsyncIterator[Any]: ...
    async def queue_depth(self) -> int: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


def make_broker(settings: Settings) -> Broker:
    if settings.queue_backend == "postgres":
        return PostgresBroker(
            settings.database_url,
            settings.queue_prefix,
            visibility_seconds=max(5.0, settings.lease_seconds),
        )
    return RabbitBroker(
        settings.amqp_url, settings.queue_prefix, heartbeat=settings.amqp_heartbeat_seconds
    )
