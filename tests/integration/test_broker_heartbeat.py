"""The AMQP heartbeat each process asks RabbitMQ for (AMQP_HEARTBEAT_SECONDS, or the URL's own).

The broker is the judge: it drops a peer that sent no heartbeat for about that long and requeues
the pointers it held (the frozen-worker test in test_crash_matrix.py shows the effect), so the
timeout is read from RabbitMQ itself (`rabbitmqctl list_connections`), not from the client.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import anyio
import pytest

from flowstudio.queue.broker import RabbitBroker

pytestmark = pytest.mark.anyio
URL = os.environ.get("AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def broker_timeouts() -> dict[str, int]:
    """connection name -> the heartbeat timeout RabbitMQ agreed, for every open connection."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "client_properties", "timeout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        props, _, timeout = line.rpartition("\t")
        marker = '{"connection_name","'
        if marker in props:
            found[props.split(marker, 1)[1].split('"', 1)[0]] = int(timeout)
    return found


@pytest.mark.parametrize(
    ("url", "expected"),
    [(URL, 7), (URL.rstrip("/") + "/?heartbeat=9", 9)],
    ids=["setting", "url-wins"],
)
async def test_the_broker_agrees_the_heartbeat_asked_for(url: str, expected: int) -> None:
    broker = RabbitBroker(url, f"hb{uuid.uuid4().hex[:8]}", heartbeat=7)
    await broker.connect()
    try:
        found = await anyio.to_thread.run_sync(broker_timeouts)
        assert found[f"flowstudio:{broker.queue_name}"] == expected
    finally:
        await broker._pub.queue_delete(broker.queue_name)  # the publisher channel
        await broker.close()
