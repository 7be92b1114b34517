"""The egress pool's cheap liveness check, and LLM clients shared per provider.

A connection the server closed (or wrote to) while idle counts as readable, so the pool drops it
rather than reuse it (`transport.socket_readable`, what `CheapReadableStream` answers the pool), and
`llm_client.open_client` hands out one `AsyncOpenAI` per (egress, settings, base_url, key, timeout).
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import anyio
import httpx

from flowstudio.egress import Egress, EgressPolicy
from flowstudio.egress.transport import socket_readable
from flowstudio.nodes.llm_client import open_client
from flowstudio.settings import load_settings


def test_socket_readable_says_when_the_peer_closed_or_sent() -> None:
    left, right = socket.socketpair()
    try:
        assert socket_readable(left) is False  # idle: nothing to read
        right.sendall(b"x")
        assert socket_readable(left) is True
        left.recv(1)
        right.close()
        assert socket_readable(left) is True  # the peer's close: recv would return b""
    finally:
        left.close()
    assert socket_readable(left) is True and socket_readable(None) is True  # gone: drop it


def test_llm_clients_are_shared_per_provider_key_and_timeout() -> None:
    settings = load_settings(None)
    ctx: Any = SimpleNamespace(http=Egress(EgressPolicy.from_settings(settings)), settings=settings)

    async def main() -> None:
        a = await open_client(ctx, "https://api.example.com/v1", "k1", 30.0)
        assert await open_client(ctx, "https://api.example.com/v1", "k1", 30.0) is a
        assert await open_client(ctx, "https://api.example.com/v1", "k2", 30.0) is not a
        assert await open_client(ctx, "https://api.example.com/v1", "k1", 60.0) is not a
        assert await open_client(ctx, "https://other.example.com/v1", "k1", 30.0) is not a
        assert isinstance(a._client, httpx.AsyncClient)

    anyio.run(main)
