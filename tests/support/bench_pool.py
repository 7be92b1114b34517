"""Connection pool cost: `python -m tests.support.bench_pool [CLIENTS]` logs CPU per request.

A server process on 127.0.0.1 answers every request after 50 ms (keep-alive). CLIENTS (default 64)
concurrent clients each make 40 requests through one pool: httpcore's stock `AsyncConnectionPool`
and `egress.pool.LeanConnectionPool`, alternating, 5 runs each; this process's CPU per request
(the server runs in its own process) is logged as the median and range. Never asserts a duration.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import time

import anyio
import httpcore

from flowstudio.egress.pool import LeanConnectionPool

log = logging.getLogger("bench_pool")
SERVER = r"""
import asyncio
async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except Exception:
        pass
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
REQUESTS = 40


def cpu_per_request_us(pool_class: type[httpcore.AsyncConnectionPool], port: int, n: int) -> float:
    async def main() -> None:
        async with pool_class(max_connections=None) as pool:

            async def client() -> None:
                for _ in range(REQUESTS):
                    response = await pool.request("GET", f"http://127.0.0.1:{port}/")
                    assert response.status == 200

            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(client)

    started = time.process_time()
    anyio.run(main)
    return (time.process_time() - started) / (n * REQUESTS) * 1e6


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        pools: dict[str, type[httpcore.AsyncConnectionPool]] = {
            "httpcore AsyncConnectionPool": httpcore.AsyncConnectionPool,
            "LeanConnectionPool": LeanConnectionPool,
        }
        figures: dict[str, list[float]] = {name: [] for name in pools}
        for _ in range(5):
            for name, pool_class in pools.items():
                figures[name].append(cpu_per_request_us(pool_class, port, clients))
    finally:
        server.kill()
    for name, values in figures.items():
        log.info(
            "%-30s %d clients: CPU per request median %.0f us [%.0f-%.0f]",
            name,
            clients,
            statistics.median(values),
            min(values),
            max(values),
        )


if __name__ == "__main__":
    main()
