"""Advance a run after any step transition: ready/skip what the planner decides, settle the run.

`advance_run(txn, graph)` runs inside the caller's checkpoint transaction (run row locked): it reads the
run's step states (unless the caller passes them), asks `planner.plan()` which pending steps become ready or skipped, moves them with
guarded UPDATEs (ready ones get outbox rows), then settles the run with `planner.run_state()`:
succeeded (outputs collected from `output` nodes), waiting, or running. `fail_run(txn, ...)` and
`cancel_run_steps(txn, ...)` end a run and cancel every live step (running ones lose their lease).
"""

from __future__ import annotations

from typing import Any

from flowstudio.engine.planner import StepState, plan, run_state
from flowstudio.engine.runtxn import READY_MOVE, RunTxn
from flowstudio.engine.states import STEP_LIVE
from flowstudio.engine.txnsql import RUN_OUTPUTS, STEP_STATES
from flowstudio.flows.graph import FlowGraph


async def load_states(txn: RunTxn) -> dict[str, StepState]:
    cur = await txn.conn.execute(STEP_STATES, {"run": txn.run["id"]})
    return {r["node_id"]: StepState(r["status"], r["branch"]) for r in await cur.fetchall()}


async def collect_outputs(txn: RunTxn, graph: FlowGraph) -> Any:
    outs = list(graph.output_nodes)
    if not outs:
        return None
    cur = await txn.conn.execute(RUN_OUTPUTS, {"run": txn.run["id"], "nodes": outs})
    rows = {r["node_id"]: r["output"] for r in await cur.fetchall()}
    if len(outs) == 1:
        return rows.get(outs[0])
    return rows


async def advance_run(
    txn: RunTxn, graph: FlowGraph, states: dict[str, StepState] | None = None
) -> None:
    """`states`: the run's current step states when the caller just read them under the run lock
    (`txn.move_steps_reading_states`); otherwise they are loaded here."""
    if txn.terminal:
        return
    if states is None:
        states = await load_states(txn)
    decided = plan(graph, states)
    if decided.ready:
        where, set_sql = READY_MOVE
        await txn.move_steps("ready", where, {"nodes": decided.ready}, set_sql=set_sql)
    if decided.skipped:
        await txn.move_steps(
            "skip",
            "s.node_id = ANY(%(nodes)s) AND s.item_index = 0",
            {"nodes": decided.skipped},
            set_sql="finished_at = clock_timestamp()",
        )
    await settle_run(txn, graph, run_state(states))


async def settle_run(txn: RunTxn, graph: FlowGraph, state: str) -> None:
    match state:
        case "succeeded":
            if txn.status == "queued":
                txn.move_run("start", started_at=True)
            txn.move_run("succeed", outputs=await collect_outputs(txn, graph), finished_at=True)
        case "waiting" if await _items_live(txn):
            if txn.status == "queued":
                txn.move_run("start", started_at=True)
            elif txn.status == "waiting":
                txn.move_run("wake")
        case "waiting":
            if txn.status == "queued":
                txn.move_run("start", started_at=True)
            txn.move_run("wait")
        case "running":
            if txn.status == "waiting":
                txn.move_run("wake")
        case "failed":  # normally settled by fail_run in the failing transaction; repair here
            await fail_run(txn, {"message": "a step failed", "node_id": None})


async def _items_live(txn: RunTxn) -> bool:
    """Map items run under a `waiting` map step: the run is running while any item is live."""
    cur = await txn.conn.execute(
        """SELECT 1 FROM steps WHERE run_id = %s AND item_index > 0
           AND status IN ('ready', 'running', 'retrying', 'waiting') LIMIT 1""",
        (txn.run["id"],),
    )
    return await cur.fetchone() is not None


async def cancel_run_steps(txn: RunTxn, reason: str) -> list[dict[str, Any]]:
    return await txn.move_steps(
        "cancel",
        "TRUE",
        {},
        set_sql="finished_at = now(), lease_owner = NULL, lease_expires_at = NULL, due_at = NULL",
        data={"reason": reason},
    )


async def fail_run(txn: RunTxn, error: dict[str, Any]) -> None:
    await cancel_run_steps(txn, f"run failed at node {error.get('node_id')}")
    txn.move_run("fail", error=error, finished_at=True)


async def cancel_run(txn: RunTxn, reason: str = "cancelled by user") -> bool:
    if txn.terminal:
        return False
    await cancel_run_steps(txn, reason)
    return txn.move_run("cancel", error={"message": reason}, finished_at=True)


LIVE_STEPS = list(STEP_LIVE)
