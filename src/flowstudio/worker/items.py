"""What a map item or a subflow step needs beyond an ordinary node.

`step_params(step, graph)` gives the params and timeout to execute: the node's own, or for a map item
(item_index > 0) the map's `body` params. `load_item(conn, step)` reads the item stored as the item
step's input at expansion. `resolve_child_flow(conn, step, flow_id, version)` checks that the run's
owner may run that flow (owner or admin) and pins its version, for `subflow` steps and map bodies
that are flows.
"""

from __future__ import annotations

from typing import Any

import psycopg

from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.flows.graph import FlowGraph
from flowstudio.nodes.registry import NodeError


def step_params(step: ClaimedStep, graph: FlowGraph) -> tuple[dict[str, Any], float | None]:
    node = graph.nodes[step.node_id]
    if step.item_index == 0:
        return node.data.params, node.data.timeout_s
    body = node.data.params.get("body") or {}
    if body.get("flow_id"):
        params = {
            "flow_id": body["flow_id"],
            "version": body.get("version"),
            "inputs": body.get("inputs"),
        }
        return {k: v for k, v in params.items() if v is not None}, body.get("timeout_s")
    return dict(body.get("params") or {}), body.get("timeout_s")


async def load_item(conn: psycopg.AsyncConnection[Any], step: ClaimedStep) -> Any:
    cur = await conn.execute("SELECT input FROM step_io WHERE step_id = %s", (step.step_id,))
    row = await cur.fetchone()
    return row["input"] if row else None


async def resolve_child_flow(
    conn: psycopg.AsyncConnection[Any], step: ClaimedStep, flow_id: str, version: int | None
) -> int:
    cur = await conn.execute(
        """SELECT f.version, f.owner_id = %s::uuid OR 'admin' = ANY(u.roles) AS allowed
           FROM flows f, users u WHERE f.id = %s::uuid AND f.deleted_at IS NULL AND u.id = %s""",
        (step.owner_id, flow_id, step.owner_id),
    )
    row = await cur.fetchone()
    if row is None or not row["allowed"]:
        raise NodeError(f"subflow {flow_id} not found", retryable=False)
    pinned = version or row["version"]
    if not 1 <= pinned <= row["version"]:
        raise NodeError(f"subflow {flow_id} has no version {pinned}", retryable=False)
    return int(pinned)
