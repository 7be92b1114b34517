"""CPU-heavy request work off the event loop: `await run_cpu(fn, *args)`.

The API's event loop must keep answering (`/health/live` included) while one request validates a big
flow or hashes a password. `run_cpu` runs `fn` in a worker thread (`anyio.to_thread.run_sync`) behind
one process-wide `CapacityLimiter` of `CPU_WORK_LIMIT` slots (default 2), so a burst of such requests
queues for a slot instead of starving the loop or spawning a thread each. argon2 releases the GIL;
pure-Python work (validation) still shares it, but the interpreter switches threads every few ms, so
the loop keeps running. `configure(limit)` is called by the app factory; the limiter is created lazily
inside the running loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
_limit = 2
_limiter: anyio.CapacityLimiter | None = None


def configure(limit: int) -> None:
    global _limit, _limiter
    _limit, _limiter = max(1, limit), None


async def run_cpu(fn: Callable[..., T], *args: object) -> T:
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(_limit)
    return await anyio.to_thread.run_sync(fn, *args, limiter=_limiter)
