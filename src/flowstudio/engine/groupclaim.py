"""Group claim: the claims of several published steps (of different runs) in ONE transaction.

`claim_steps(conn, messages, worker_id=..., lease_seconds=...)` is `claim.claim_step` for the
messages (`StepMessage`: run, step, fencing token) of many steps at once, in two messages to PostgreSQL whatever their number: (1) `BEGIN`, then for each run,
in run-id order (the order of group commits too, so no two groups deadlock on their run locks): the
run lock and the fenced ready → running move under this worker's lease (`attempt = attempt + 1`:
the fencing token); then Python moves each run (a queued run starts, a waiting one wakes); (2) each
run's flush (its events, NOTIFY) and one `COMMIT`.

Every guarantee of the single claim holds per member: a member whose move matched nothing (a stale
or duplicate message, a step another worker holds) is a `LostRace` for that member only: it wrote
nothing, and the others commit. A crash anywhere before the COMMIT claims nothing of the group: its
messages were not acked, the broker hands them out again (crash point
`group_claim.between_statements`). A database error (a deadlock, a lost connection) raises
`GroupFailed` after the rollback: the caller claims each member alone.

With `context_nodes` (`claim_steps_reading_context`) each claimed top-level step's context rows
are read by its flush statement too, as `claim.claim_step_reading_context` reads them.

Claims must be of distinct runs; `worker/grouping.py` forms the groups.
"""

from __future__ import annotations

from typing import Any

import psycopg

from flowstudio.crashpoints import crashpoint
from flowstudio.engine.checkpoint import ClaimedStep, NextStep, claimed_step
from flowstudio.engine.claim import (
    CLAIM_WHERE,
    ContextNodes,
    claim_params,
    read_context_at_flush,
    start_or_wake,
)
from flowstudio.engine.groupcommit import GroupFailed, send_statements
from flowstudio.engine.runtxn import LostRace, RunTxn, rollback
from flowstudio.engine.txnsql import CLAIM_SET, LOCK_RUN
from flowstudio.queue.message import StepMessage


async def claim_steps(
    conn: psycopg.AsyncConnection[Any],
    claims: list[StepMessage],
    *,
    worker_id: str,
    lease_seconds: float,
) -> list[ClaimedStep | LostRace]:
    """Claim the members in one transaction; per member (in the given order) the claimed step or
    the LostRace that dropped it. Raises GroupFailed (rolled back: claim each alone)."""
    claimed = await claim_steps_reading_context(
        conn, claims, worker_id=worker_id, lease_seconds=lease_seconds
    )
    return [c.step if isinstance(c, NextStep) else c for c in claimed]


async def claim_steps_reading_context(
    conn: psycopg.AsyncConnection[Any],
    claims: list[StepMessage],
    *,
    worker_id: str,
    lease_seconds: float,
    context_nodes: ContextNodes | None = None,
) -> list[NextStep | LostRace]:
    """`claim_steps`, each claimed step with its context rows when `context_nodes` is given."""
    runs = [c.run_id for c in claims]
    if len(set(runs)) != len(runs):
        raise ValueError("a group claims steps of distinct runs")
    ordered = sorted(claims, key=lambda c: c.run_id)  # one lock order for every group
    txns = [RunTxn(conn, {}, key=c.run_id) for c in ordered]
    try:
        outcome = await _claim(conn, ordered, txns, worker_id, lease_seconds, context_nodes)
    except psycopg.Error as exc:
        await rollback(conn)
        raise GroupFailed(f"group claim of {len(claims)} rolled back: {exc!r}") from exc
    except BaseException:
        await rollback(conn)
        raise
    by_run = {c.run_id: outcome[i] for i, c in enumerate(ordered)}
    return [by_run[run] for run in runs]


async def _claim(
    conn: psycopg.AsyncConnection[Any],
    claims: list[StepMessage],
    txns: list[RunTxn],
    worker_id: str,
    lease_seconds: float,
    context_nodes: ContextNodes | None,
) -> list[NextStep | LostRace]:
    statements: list[tuple[str, dict[str, Any]]] = [("BEGIN", {})]
    for claim, txn in zip(claims, txns, strict=True):
        params = claim_params(claim.step_id, claim.token, worker_id, lease_seconds)
        statements += [
            (LOCK_RUN, {"_lock_run": claim.run_id}),
            txn.move_statement("claim", CLAIM_WHERE, params, set_sql=CLAIM_SET),
        ]
    results = await send_statements(conn, statements)
    outcome: list[NextStep | LostRace | None] = []
    live: list[tuple[int, RunTxn, dict[str, Any]]] = []  # member index, its txn, its moved row
    for i, (claim, txn) in enumerate(zip(claims, txns, strict=True)):
        lock, moved = results[1 + 2 * i : 3 + 2 * i]
        if not lock or not moved:  # no such run, or the fence matched nothing: nothing written
            outcome.append(LostRace(f"step {claim.step_id} token {claim.token} not claimable"))
            continue
        txn.run = lock[0]
        if txn.terminal:  # a terminal run has no ready step; had one moved, undo the whole group
            raise GroupFailed(f"run {claim.run_id} is {txn.status} but its step moved")
        txn.take_moves("claim", moved)
        start_or_wake(txn)
        await read_context_at_flush(txn, moved[0], context_nodes)
        live.append((i, txn, moved[0]))
        outcome.append(None)  # the claimed step, once the flush is read
    crashpoint("group_claim.between_statements")
    flushed = await send_statements(
        conn, [*(t.flush_statement() for _, t, _ in live), ("COMMIT", {})]
    )
    for (i, txn, row), rows in zip(live, flushed, strict=False):
        txn.take_flush(rows[0])
        # RETURNING shows the new row: attempt incremented
        outcome[i] = NextStep(claimed_step(txn, row), txn.context_rows)
    return [o for o in outcome if o is not None]
