"""This machine's PostgreSQL commit ceiling, the yardstick the engine's throughput is divided by.

`measure_ceiling(url, seconds)` creates a one-table schema in the bench database, then for 1, 4 and
16 connections (`_commit_loop` per connection) runs BEGIN; INSERT one row; UPDATE that row; COMMIT
in a loop for `seconds` each and returns the committed transactions per second for each level. The
engine's checkpoint is about one such commit per step transition, so the best level is its upper
bound here. The levels are measured in `ROUNDS` rounds and each keeps its best: a single 3-second
sample swung between ~4,300 and ~6,600 tx/s on the same idle machine, and an underestimated ceiling
would flatter the engine's ratio.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import psycopg

log = logging.getLogger(__name__)
LEVELS = (1, 4, 16)
ROUNDS = 2


async def _commit_loop(conn: psycopg.AsyncConnection[Any], until: float, counts: list[int]) -> None:
    n = 0
    while time.monotonic() < until:
        async with conn.transaction():
            cur = await conn.execute("INSERT INTO bench_ceiling (n) VALUES (0) RETURNING id")
            row = await cur.fetchone()
            assert row is not None
            await conn.execute("UPDATE bench_ceiling SET n = n + 1 WHERE id = %s", (row[0],))
        n += 1
    counts.append(n)


async def measure_level(url: str, connections: int, seconds: float) -> float:
    conns = [
        await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(connections)
    ]
    counts: list[int] = []
    try:
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(_commit_loop, conn, start + seconds, counts)
        elapsed = time.monotonic() - start
    finally:
        for conn in conns:
            await conn.close()
    return sum(counts) / elapsed


async def measure_ceiling(url: str, seconds: float = 3.0) -> dict[int, float]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("""CREATE TABLE IF NOT EXISTS bench_ceiling (
                   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   n integer NOT NULL,
                   created_at timestamptz NOT NULL DEFAULT now())""")
    tps: dict[int, float] = {}
    for _ in range(ROUNDS):
        for level in LEVELS:
            measured = await measure_level(url, level, seconds)
            log.info("PostgreSQL ceiling with %d connection(s): %.0f tx/s", level, measured)
            tps[level] = max(tps.get(level, 0.0), measured)
    return tps
