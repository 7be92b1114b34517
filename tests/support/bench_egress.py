"""Egress guard overhead: `python -m tests.support.bench_egress [N]` prints median latencies.

A local HTTP server on 127.0.0.1; N requests (default 300) each with a plain httpx client and with the
guarded one (`flowstudio.egress`), in two modes: pooled (keep-alive: the guard adds its transport
wrapper and the capped body stream) and a new connection per request to `localhost` (the guard adds
resolve-once + the address check; plain httpx resolves too). Prints the medians and the difference;
never asserts a duration. Wall time is at the mercy of machine load; the process CPU
medians are the steadier figure.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time

import anyio
import httpx

from flowstudio.egress import Egress, EgressPolicy
from flowstudio.egress.transport import default_ssl_context
from tests.support.tiny_http import TinyServer

log = logging.getLogger("bench_egress")


async def _one(client: httpx.AsyncClient, url: str, close: bool) -> tuple[float, float]:
    """(wall ms, process CPU ms) of one request (the server thread shares the process)."""
    headers = {"connection": "close"} if close else {}
    wall, cpu = time.perf_counter(), time.process_time()
    resp = await client.get(url, headers=headers)
    assert resp.status_code == 200
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


async def run(n: int) -> dict[str, float]:
    server = TinyServer("127.0.0.1")
    url = server.url("/", host="localhost")
    egress = Egress(EgressPolicy.from_allowed(["localhost"]))
    plain = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(verify=default_ssl_context()), trust_env=False
    )
    figures: dict[str, float] = {}
    try:
        for mode, close in (("pooled", False), ("new_connection", True)):
            guarded = egress.client()
            for _ in range(20):  # warm up both
                await _one(plain, url, close)
                await _one(guarded, url, close)
            a, b = [], []
            for _ in range(n):  # alternate, so load drifts hit both alike
                a.append(await _one(plain, url, close))
                b.append(await _one(guarded, url, close))
            await guarded.aclose()
            for i, unit in ((0, "wall"), (1, "cpu")):
                plain_ms = statistics.median(x[i] for x in a)
                guarded_ms = statistics.median(x[i] for x in b)
                figures[f"{mode}_{unit}_plain_ms"] = plain_ms
                figures[f"{mode}_{unit}_guarded_ms"] = guarded_ms
                figures[f"{mode}_{unit}_overhead_ms"] = guarded_ms - plain_ms
    finally:
        await plain.aclose()
        await egress.aclose()
        server.close()
    return figures


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    for name, value in anyio.run(run, n).items():
        log.info("%-34s %.3f", name, value)


if __name__ == "__main__":
    main()
