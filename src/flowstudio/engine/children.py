"""Commits that park a step while children work: map items, or a child run of a `subflow` step.

Called by the worker after executing a `map` step (`commit_expand`: the step waits, the items are
inserted and the first ones readied, see `engine/fanout.py`) or a `subflow` step (`commit_start_child`:
the step waits and the child run is created in the same transaction, linked by parent_run_id and
parent_step_id). The orchestrator's timer loop calls `complete_finished_children`, which completes
each waiting subflow step whose child run is terminal (success -> the child's outputs; failure or
cancellation -> the step fails), and `cancel_orphan_children`, which cancels live child runs whose
parent run ended. Locks are only ever taken parent-then-child, never the reverse.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.advance import advance_run, cancel_run, fail_run
from flowstudio.engine.candidates import for_each_run
from flowstudio.engine.checkpoint import (
    CLEAR_LEASE,
    FENCE,
    ClaimedStep,
    fence_params,
    lease_lost,
    save_io,
    start_run,
)
from flowstudio.engine.fanout import expand_map, settle_item
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.runtxn import LostRace, OutboxMessage, RunTxn, run_transaction
from flowstudio.store.statuses import (
    RUN_ENDED_SQL,
    RUN_LIVE_SQL,
    RunStatus,
    StepStatus,
    sql_list,
    sql_value,
    values,
)

BATCH = 200
# A parent run that ended without succeeding: its live children are cancelled.
PARENT_ENDED_SQL = sql_list(values(RunStatus.FAILED, RunStatus.CANCELLED))


async def _park(txn: Any, step: ClaimedStep, worker_id: str, data: dict[str, Any]) -> None:
    moved = await txn.move_steps(
        "wait",
        FENCE,
        fence_params(step, worker_id),
        set_sql=f"due_at = NULL, {CLEAR_LEASE}",
        data=data,
    )
    if not moved:
        raise lease_lost(step)


async def commit_expand(
    conn: psycopg.AsyncConnection[Any],
    step: ClaimedStep,
    worker_id: str,
    *,
    input_: Any,
    items: list[Any],
) -> list[OutboxMessage]:
    graph = await load_graph(conn, step.flow_id, step.flow_version)
    async with run_transaction(conn, step.run_id) as txn:
        await _park(txn, step, worker_id, {"items": len(items)})
        await save_io(conn, step.step_id, input_, None)
        await expand_map(txn, graph, step.step_id, step.node_id, items)
    return txn.outbox


async def commit_start_child(
    conn: psycopg.AsyncConnection[Any],
    step: ClaimedStep,
    worker_id: str,
    *,
    input_: Any,
    flow_id: str,
    version: int,
    inputs: dict[str, Any],
) -> list[OutboxMessage]:
    async with run_transaction(conn, step.run_id) as txn:
        await _park(txn, step, worker_id, {"child_flow_id": flow_id, "version": version})
        await save_io(conn, step.step_id, input_, None)
        child = await start_run(
            conn,
            flow_id=flow_id,
            version=version,
            owner_id=step.owner_id,
            inputs=inputs,
            parent_run_id=step.run_id,
            idempotency_key=f"child:{step.step_id}:{step.attempt}",
        )
        await conn.execute(
            "UPDATE runs SET parent_step_id = %s WHERE id = %s", (step.step_id, child.id)
        )
        txn.event(
            "child",
            step_id=step.step_id,
            node_id=step.node_id,
            item_index=step.item_index,
            data={"child_run_id": child.id},
        )
    return txn.outbox + child.outbox


async def complete_finished_children(conn: psycopg.AsyncConnection[Any]) -> list[OutboxMessage]:
    cur = await conn.execute(
        f"""SELECT s.id, s.run_id, s.node_id, s.item_index, c.id AS child_id, c.status,
                   c.outputs, c.error
            FROM steps s JOIN runs c ON c.parent_step_id = s.id
            WHERE s.status = {sql_value(StepStatus.WAITING)} AND s.node_type = 'subflow'
              AND c.status IN {RUN_ENDED_SQL}
            LIMIT %s""",
        (BATCH,),
    )

    async def complete(txn: RunTxn, row: dict[str, Any]) -> None:
        graph = await load_graph(conn, txn.run["flow_id"], txn.run["flow_version"])
        await _complete_one(txn, graph, row)

    return await for_each_run(conn, await cur.fetchall(), complete, skip_terminal=True)


async def _complete_one(txn: Any, graph: Any, row: dict[str, Any]) -> None:
    params = {"step": row["id"]}
    data = {"child_run_id": str(row["child_id"]), "child_status": row["status"]}
    if row["status"] == RunStatus.SUCCEEDED.value:
        moved = await txn.move_steps(
            "finish_wait", "s.id = %(step)s", params, set_sql="finished_at = now()", data=data
        )
        if not moved:
            raise LostRace("already completed")
        await txn.conn.execute(
            "UPDATE step_io SET output = %s WHERE step_id = %s", (Jsonb(row["outputs"]), row["id"])
        )
        if row["item_index"] > 0:
            await settle_item(txn, graph, row["node_id"], row["item_index"])
        else:
            await advance_run(txn, graph)
        return
    err = {"message": f"child run {row['child_id']} {row['status']}", "child_error": row["error"]}
    moved = await txn.move_steps(
        "fail",
        "s.id = %(step)s",
        {**params, "err": Jsonb(err)},
        set_sql="error = %(err)s, finished_at = now()",
        data=data,
    )
    if not moved:
        raise LostRace("already completed")
    if row["item_index"] > 0:
        await settle_item(txn, graph, row["node_id"], row["item_index"], failed=True)
    else:
        await fail_run(txn, {"node_id": row["node_id"], **err})


async def cancel_orphan_children(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute(
        f"""SELECT c.id FROM runs c JOIN runs p ON p.id = c.parent_run_id
            WHERE c.parent_step_id IS NOT NULL AND c.status IN {RUN_LIVE_SQL}
              AND p.status IN {PARENT_ENDED_SQL} LIMIT %s""",
        (BATCH,),
    )
    n = 0
    for row in await cur.fetchall():
        try:
            async with run_transaction(conn, row["id"]) as txn:
                if await cancel_run(txn, "parent run ended"):
                    n += 1
        except LostRace:
            continue
    return n
