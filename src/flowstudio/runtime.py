"""Process plumbing shared by every long-running component: event loop, signals, process registry.

`run_async(main, loop)` runs a coroutine with anyio on asyncio: on uvloop's loop where EVENT_LOOP
resolves to it (`settings.resolve_event_loop`: the default wherever uvloop is installed, i.e. not on
Windows), else asyncio's own, a selector event loop on Windows (psycopg async needs it).
`stop_on_signals(event)` sets an event on SIGTERM/SIGINT (portable fallback where
anyio's signal receiver is unavailable). `register_process` / `process_heartbeat_loop` keep a row in
`processes` fresh so dashboards see live workers and orchestrators (the heartbeat also reports the
process's pool usage, `pool_stats`, for GET /metrics; the SQL is in `store/processes.py`);
`new_process_id` never reuses an id; `tune_gc` keeps the cyclic garbage collector from stalling a busy
event loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from flowstudio.settings import resolve_event_loop
from flowstudio.store import processes
from flowstudio.store.db import Pool

log = logging.getLogger(__name__)


def run_async(main: Callable[[], Awaitable[Any]], loop: str | None = None) -> Any:
    """`loop`: `uvloop` or `asyncio` (a resolved EVENT_LOOP); None resolves the environment's.
    Measured with `flowstudio bench` (README "Event loop"): on uvloop the engine took ~7% less CPU
    per step (median of 4 pairs; no change measurable on the LLM batch, paced by its provider)."""
    options: dict[str, Any] = {}
    name = "asyncio"
    if sys.platform == "win32":
        options["loop_factory"] = asyncio.SelectorEventLoop
    elif (loop or resolve_event_loop()) == "uvloop":
        options["use_uvloop"] = True
        name = "uvloop"
    log.info("event loop: %s", name)
    return anyio.run(main, backend="asyncio", backend_options=options)


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what start-up allocated (modules, registries, pools: never garbage) out of the cyclic
    collector's reach and run the young generation's collection every `gen0_threshold` allocations
    (GC_GEN0_THRESHOLD; 0 keeps Python's 700). Measured with `bench --llm`: a worker holding hundreds
    of steps spent ~1 s of 15 in the collector, with full collections stalling its event loop up to
    150 ms (every permit and call in flight waits); tuned, ~0.05 s and 9% less CPU per item."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, 20, 20)


def new_process_id(kind: str) -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def stop_on_signals(stop: anyio.Event) -> None:
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received signal %s: shutting down", signum)
                stop.set()
                return
    except NotImplementedError:  # Windows: no signal receiver in anyio; poll a flag instead
        flag: list[int] = []
        signal.signal(signal.SIGINT, lambda s, f: flag.append(s))
        signal.signal(signal.SIGTERM, lambda s, f: flag.append(s))
        while not flag:  # noqa: ASYNC110 -- a signal handler may not touch the loop
            await anyio.sleep(0.2)
        stop.set()


async def register_process(pool: Pool, process_id: str, kind: str, info: dict[str, Any]) -> None:
    async with pool.connection() as conn:
        await processes.register(conn, process_id, kind, socket.gethostname(), os.getpid(), info)


async def process_heartbeat_loop(
    pool: Pool, process_id: str, kind: str, info: dict[str, Any], interval: float
) -> None:
    while True:
        try:
            async with pool.connection() as conn:
                if not await processes.heartbeat(
                    conn, process_id, {**info, "pool": pool_stats(pool)}
                ):
                    await register_process(pool, process_id, kind, info)
                await processes.sweep_silent(conn)
        except Exception as exc:  # DB briefly down: the heartbeat is informational
            log.warning("process heartbeat failed: %s", exc)
        await anyio.sleep(interval)


def pool_stats(pool: Pool) -> dict[str, int]:
    """The pool's usage, reported in the heartbeat (GET /metrics sums it per process kind)."""
    stats = pool.get_stats()
    return {
        "size": int(stats.get("pool_size", 0)),
        "available": int(stats.get("pool_available", 0)),
        "waiting": int(stats.get("requests_waiting", 0)),
        "max": int(pool.max_size),
    }


async def unregister_process(pool: Pool, process_id: str) -> None:
    try:
        async with pool.connection(timeout=3) as conn:
            await processes.unregister(conn, process_id)
    except Exception as exc:  # shutting down anyway
        log.debug("could not unregister %s: %s", process_id, exc)
