"""The lock-each-candidate loop of the orchestrator's passes (recovery, timers, subflow children, batches).

A pass finds candidates with a cheap indexed query, then `for_each_run(conn, rows, move)` moves each
one in its own checkpoint transaction: `run_transaction(conn, row[run_key])` locks the run, `move(txn,
row)` does the guarded moves, the commit queues the outbox. A candidate another orchestrator moved
first (`LostRace`, from the lock or from `move`) is skipped; `skip_terminal` skips runs that ended.
Returns the outbox messages of everything that committed, for the caller to publish.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg

from flowstudio.engine.runtxn import LostRace, OutboxMessage, RunTxn, run_transaction

Move = Callable[[RunTxn, dict[str, Any]], Awaitable[Any]]


async def for_each_run(
    conn: psycopg.AsyncConnection[Any],
    rows: Iterable[dict[str, Any]],
    move: Move,
    *,
    run_key: str = "run_id",
    skip_terminal: bool = False,
) -> list[OutboxMessage]:
    """`move(txn, row)` per candidate row in its run's transaction; the outbox of what committed."""
    out: list[OutboxMessage] = []
    for row in rows:
        try:
            async with run_transaction(conn, row[run_key]) as txn:
                if skip_terminal and txn.terminal:
                    continue
                await move(txn, row)
            out += txn.outbox
        except LostRace:
            continue
    return out
