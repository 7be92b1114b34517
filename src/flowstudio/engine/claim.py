"""Claims: a worker takes a ready step under its lease (fencing token), the run starting or waking.

`claim_step(conn, run_id=, step_id=, token=, worker_id=, lease_seconds=)` is the claim of a
published step (its message's run, step and token) as ONE checkpoint transaction under the run
lock: the fenced ready -> running move (`attempt = attempt + 1`, lease owner and expiry), the run
move (a queued run starts, a waiting one wakes: `start_or_wake`), their events and NOTIFY. A
message whose token no longer matches claims nothing (`LostRace`). `claim_step_reading_context`
is the same claim whose last statement also reads the claimed top-level step's context rows (the
state and output of the nodes it reads, `context_nodes`), as an eager claim does, so the worker
executes it without a query of its own. `engine/groupclaim.py` claims many at once with the same
pieces (`CLAIM_WHERE`, `claim_params`, `start_or_wake`, `read_context_at_flush`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from flowstudio.engine.checkpoint import ClaimedStep, NextStep, claimed_step
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.runtxn import LostRace, RunTxn, run_transaction
from flowstudio.engine.txnsql import CLAIM_SET
from flowstudio.flows.graph import FlowGraph

log = logging.getLogger(__name__)
# the nodes whose state and output a step's context reads (`worker.context.context_nodes`)
ContextNodes = Callable[[FlowGraph, str], Sequence[str]]


async def claim_step(
    conn: psycopg.AsyncConnection[Any],
    *,
    run_id: Any,
    step_id: int,
    token: int,
    worker_id: str,
    lease_seconds: float,
) -> ClaimedStep:
    """Move a ready step (attempt == token) to running under a lease held by `worker_id`."""
    claimed = await claim_step_reading_context(
        conn,
        run_id=run_id,
        step_id=step_id,
        token=token,
        worker_id=worker_id,
        lease_seconds=lease_seconds,
    )
    return claimed.step


async def claim_step_reading_context(
    conn: psycopg.AsyncConnection[Any],
    *,
    run_id: Any,
    step_id: int,
    token: int,
    worker_id: str,
    lease_seconds: float,
    context_nodes: ContextNodes | None = None,
) -> NextStep:
    """`claim_step`; with `context_nodes`, a top-level step's context rows are read by the claim's
    last statement (as an eager claim reads them), so the worker need not query them."""
    async with run_transaction(conn, run_id, defer_lock=True) as txn:
        rows = await txn.move_steps(
            "claim",
            CLAIM_WHERE,
            claim_params(step_id, token, worker_id, lease_seconds),
            set_sql=CLAIM_SET,
        )
        if not rows or txn.terminal:  # (a terminal run has no ready step: belt and braces)
            raise LostRace(f"step {step_id} token {token} not claimable")
        start_or_wake(txn)
        await read_context_at_flush(txn, rows[0], context_nodes)
    # RETURNING shows the new row: attempt already incremented
    return NextStep(claimed_step(txn, rows[0]), txn.context_rows)


async def read_context_at_flush(
    txn: RunTxn,
    row: dict[str, Any],
    context_nodes: ContextNodes | None,
) -> None:
    """Have the claim's flush read the claimed top-level step's context rows too. A pinned flow
    version that cannot be loaded is not the claim's business: the step is claimed without its
    context, and the worker, which cannot start it either, fails it (`Worker.execute`)."""
    if context_nodes is None or row["item_index"] != 0:
        return
    try:
        graph = await load_graph(txn.conn, txn.run["flow_id"], txn.run["flow_version"])
    except psycopg.Error:
        raise  # the transaction is broken: the claim fails as a whole
    except Exception as exc:
        log.warning("claim of step %s without its context: %s", row["id"], exc)
        return
    if row["node_id"] in graph.nodes:
        txn.read_context = list(context_nodes(graph, row["node_id"]))


CLAIM_WHERE = "s.id = %(step)s AND s.attempt = %(token)s"


def claim_params(step_id: int, token: int, worker_id: str, lease_seconds: float) -> dict[str, Any]:
    return {"step": step_id, "token": token, "cl_owner": worker_id, "cl_lease": lease_seconds}


def start_or_wake(txn: RunTxn) -> None:
    """The run move of a claim: a queued run starts, a waiting one wakes."""
    if txn.status == "queued":
        txn.move_run("start", started_at=True)
    elif txn.status == "waiting":
        txn.move_run("wake")
