"""`LeanConnectionPool` against a real HTTP/1.1 server on loopback: the stock pool's guarantees hold.

The server (asyncio streams) counts the connections it accepted, the most it had open at once
and the requests it answered; `/slow` answers after 50 ms, `?close=1` closes the connection after
answering without telling the client (a keep-alive the server dropped while idle).
Flow: start the server -> drive a pool (concurrent, sequential, capped, expired, cancelled) ->
compare what the server saw with what the stock pool promises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpcore
import pytest

from flowstudio.egress import pool as pool_module
from flowstudio.egress.pool import LeanConnectionPool


@dataclass
class Server:
    port: int = 0
    accepted: int = 0
    open_now: int = 0
    most_open: int = 0
    answered: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1]
                if target.startswith(b"/slow"):
                    await asyncio.sleep(0.05)
                body = b"ok"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)
                await writer.drain()
                self.answered += 1
                if b"close=1" in target:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    server = Server()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()


async def get(pool: httpcore.AsyncConnectionPool, server: Server, path: str = "/") -> bytes:
    response = await pool.request("GET", f"http://127.0.0.1:{server.port}{path}")
    assert response.status == 200
    return response.content


async def burst(pool: httpcore.AsyncConnectionPool, server: Server, n: int) -> None:
    """`n` concurrent slow requests, all answered."""
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(get, pool, server, "/slow")


def run(main: object) -> None:
    anyio.run(main, backend="asyncio")  # type: ignore[arg-type]


def test_concurrent_requests_then_reuse_without_new_connections() -> None:
    async def main() -> None:
        async with serving() as server, LeanConnectionPool(max_connections=None) as pool:
            await burst(pool, server, 50)
            assert server.answered == 50 and server.accepted == 50
            for _ in range(3):  # a second wave is served by the idle connections
                await burst(pool, server, 50)
            assert server.answered == 200 and server.accepted == 50
            for _ in range(20):  # one at a time: one connection serves them all
                await get(pool, server)
            assert server.accepted == 50 and len(pool.connections) == 50

    run(main)


def test_a_connection_the_server_closed_while_idle_is_never_reused() -> None:
    async def main() -> None:
        async with serving() as server, LeanConnectionPool() as pool:
            for i in range(5):
                await get(pool, server, "/?close=1")
                await anyio.sleep(0.05)  # the server's FIN arrives while the connection is idle
                assert server.accepted == i + 1  # each request found the last one dead
            assert server.answered == 5

    run(main)


def test_max_connections_is_never_exceeded_and_queued_requests_all_finish() -> None:
    async def main() -> None:
        async with serving() as server, LeanConnectionPool(max_connections=3) as pool:
            await burst(pool, server, 30)
            assert server.answered == 30 and server.accepted == 3 and server.most_open == 3

    run(main)


def test_idle_connections_past_keepalive_expiry_are_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool_module, "SWEEP_SECONDS", 0.1)

    async def main() -> None:
        async with serving() as server, LeanConnectionPool(keepalive_expiry=0.2) as pool:
            await burst(pool, server, 5)
            assert server.accepted == 5
            await anyio.sleep(0.4)
            await get(pool, server)  # its pass sweeps the 5 expired ones and opens a new one
            assert server.accepted == 6 and len(pool.connections) == 1
            await anyio.sleep(0.05)
            assert server.open_now == 1

    run(main)


def test_surplus_idle_connections_beyond_max_keepalive_are_closed() -> None:
    async def main() -> None:
        async with serving() as server, LeanConnectionPool(max_keepalive_connections=2) as pool:
            await burst(pool, server, 8)
            assert server.accepted == 8
            assert len(pool.connections) <= 2  # idle ones counted, not the whole pool
            await anyio.sleep(0.05)
            assert server.open_now <= 2

    run(main)


def test_cancelled_requests_leave_a_usable_pool() -> None:
    async def main() -> None:
        async with serving() as server, LeanConnectionPool(max_connections=4) as pool:
            with anyio.move_on_after(0.02):
                await burst(pool, server, 12)
            await burst(pool, server, 12)
            assert server.answered >= 12 and not pool._requests  # none left queued or assigned
            # (the server may see a cancelled request's connection close after its replacement
            # opened: the cap is the pool's count)
            assert len(pool.connections) <= 4

    run(main)


def test_an_idle_connection_handed_out_is_not_handed_out_again() -> None:
    """Two requests queued in one pass get two connections, never the same idle one twice."""

    async def main() -> None:
        async with serving() as server, LeanConnectionPool() as pool:
            await get(pool, server)  # one idle connection
            a = httpcore.Request("GET", f"http://127.0.0.1:{server.port}/")
            b = httpcore.Request("GET", f"http://127.0.0.1:{server.port}/")
            first = httpcore._async.connection_pool.AsyncPoolRequest(a)
            second = httpcore._async.connection_pool.AsyncPoolRequest(b)
            pool._requests.extend([first, second])
            pool._assign_requests_to_connections()
            assert first.connection is not None and second.connection is not None
            assert first.connection is not second.connection
            pool._requests.clear()

    run(main)
