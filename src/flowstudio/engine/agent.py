"""The durable agent loop: each LLM turn is an execution of the agent step, each tool call its own step.

An `agent` step that wants tools returns `CallTools(calls, state)`; `commit_tool_calls` (one
transaction) parks the step in `waiting`, stores the conversation `state` as its payload, and inserts
one item step per tool call (item_index after the previous turns' items, input = the call), all ready.
Every tool item's commit (success or failure: a failed tool's error is fed back to the model) calls
`fanout.settle_item` -> `advance_agent`, which wakes the agent step (`waiting -> ready`, with a fresh attempt budget) once no
tool item of it is live; the next turn then sees the state and the tool results (`load_agent_view`).
A crash at any point re-runs at most the one LLM turn or tool call in flight.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.checkpoint import CLEAR_LEASE, FENCE, ClaimedStep, fence_params, lease_lost
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.runtxn import OutboxMessage, run_transaction
from flowstudio.flows.graph import FlowGraph


def tool_node_type(graph: FlowGraph, node_id: str, tool_name: str) -> str:
    for tool in graph.nodes[node_id].data.params.get("tools") or []:
        if tool.get("name") == tool_name:
            return "subflow" if tool.get("flow_id") else str(tool.get("type") or "noop")
    return "fail"  # the model named a tool that does not exist: its error goes back to the model


async def commit_tool_calls(
    conn: psycopg.AsyncConnection[Any],
    step: ClaimedStep,
    worker_id: str,
    *,
    input_: Any,
    calls: list[dict[str, Any]],
    state: Any,
) -> list[OutboxMessage]:
    graph = await load_graph(conn, step.flow_id, step.flow_version)
    async with run_transaction(conn, step.run_id) as txn:
        moved = await txn.move_steps(
            "wait",
            FENCE,
            fence_params(step, worker_id),
            set_sql=f"due_at = NULL, {CLEAR_LEASE}",
            data={"tool_calls": [c["name"] for c in calls]},
        )
        if not moved:
            raise lease_lost(step)
        await conn.execute(
            """INSERT INTO step_io (step_id, input, output) VALUES (%s, %s, %s)
               ON CONFLICT (step_id) DO UPDATE SET output = EXCLUDED.output""",
            (step.step_id, Jsonb(input_), Jsonb(state)),
        )
        cur = await conn.execute(
            "SELECT coalesce(max(item_index), 0) AS n FROM steps WHERE run_id = %s AND node_id = %s",
            (step.run_id, step.node_id),
        )
        row = await cur.fetchone()
        first = int(row["n"] if row else 0) + 1
        for offset, call in enumerate(calls):
            ins = await conn.execute(
                """INSERT INTO steps (run_id, node_id, item_index, node_type) VALUES (%s, %s, %s, %s)
                   RETURNING id""",
                (
                    step.run_id,
                    step.node_id,
                    first + offset,
                    tool_node_type(graph, step.node_id, call["name"]),
                ),
            )
            item = await ins.fetchone()
            assert item is not None
            await conn.execute(
                "INSERT INTO step_io (step_id, input) VALUES (%s, %s)", (item["id"], Jsonb(call))
            )
        await txn.move_steps(
            "ready",
            "s.node_id = %(node)s AND s.item_index >= %(first)s",
            {"node": step.node_id, "first": first},
            set_sql="ready_at = now(), dispatched_at = now()",
        )
    return txn.outbox


async def load_agent_view(conn: psycopg.AsyncConnection[Any], step: ClaimedStep) -> dict[str, Any]:
    """The agent's saved state and every tool result so far, keyed by tool_call id."""
    cur = await conn.execute(
        """SELECT s.item_index, s.status, s.error, io.input, io.output FROM steps s
           LEFT JOIN step_io io ON io.step_id = s.id
           WHERE s.run_id = %s AND s.node_id = %s ORDER BY s.item_index""",
        (step.run_id, step.node_id),
    )
    state = None
    results: dict[str, Any] = {}
    for row in await cur.fetchall():
        if row["item_index"] == 0:
            state = row["output"]
            continue
        call = row["input"] or {}
        if row["status"] == "succeeded":
            results[str(call.get("id"))] = {"ok": True, "output": row["output"]}
        else:
            results[str(call.get("id"))] = {
                "ok": False,
                "error": row["error"],
                "status": row["status"],
            }
    return {"state": state, "results": results}


def is_agent(graph: FlowGraph, node_id: str) -> bool:
    return graph.nodes[node_id].type == "agent"
