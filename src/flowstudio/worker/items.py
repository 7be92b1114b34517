"""What a map item or a subflow step needs beyond an ordinary node.

`step_params(step, graph, item)` gives the params and timeout to execute: the node's own, for a map
item (item_index > 0) the map's `body` params, for an agent's tool call the tool's params (or its
flow); `item_context` the template names the item sees (`item`, or `args` for a tool call). `load_item(conn, step)` reads the item stored as the item
step's input at expansion. `resolve_child_flow(conn, step, flow_id, version)` checks that the run's
owner may run that flow (owner, admin, or a 'run' share) and pins its version (the one named, else
the published one, else the latest; through a share only the published version the share grants),
for `subflow` steps and map bodies that are flows (reading `store.shares.subflow_access`, a typed row).
"""

from __future__ import annotations

from typing import Any

import psycopg

from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.flows.graph import FlowGraph
from flowstudio.nodes.registry import NodeError
from flowstudio.store import runs, shares


def step_params(
    step: ClaimedStep, graph: FlowGraph, item: Any = None
) -> tuple[dict[str, Any], float | None]:
    node = graph.nodes[step.node_id]
    if step.item_index == 0:
        return node.data.params, node.data.timeout_s
    if node.type == "agent":
        return _tool_params(node.data.params, item or {})
    body = node.data.params.get("body") or {}
    if body.get("flow_id"):
        params = {
            "flow_id": body["flow_id"],
            "version": body.get("version"),
            "inputs": body.get("inputs"),
        }
        return {k: v for k, v in params.items() if v is not None}, body.get("timeout_s")
    return dict(body.get("params") or {}), body.get("timeout_s")


def _tool_params(
    agent_params: dict[str, Any], call: dict[str, Any]
) -> tuple[dict[str, Any], float | None]:
    for tool in agent_params.get("tools") or []:
        if tool.get("name") == call.get("name"):
            if tool.get("flow_id"):
                args = call.get("arguments")
                return {
                    "flow_id": tool["flow_id"],
                    "inputs": args if isinstance(args, dict) else {"input": args},
                }, None
            return dict(tool.get("params") or {}), tool.get("timeout_s")
    return {"message": f"unknown tool {call.get('name')!r}", "retryable": False}, None


def item_context(graph: FlowGraph, step: ClaimedStep, item: Any) -> dict[str, Any]:
    """Template names an item step sees: `item` for a map item; `args` for an agent's tool call."""
    if graph.nodes[step.node_id].type == "agent":
        args = (item or {}).get("arguments")
        return {"args": args, "input": args, "tool_call": item}
    return {"item": item, "input": item}


async def load_item(conn: psycopg.AsyncConnection[Any], step: ClaimedStep) -> Any:
    return await runs.step_input(conn, step.step_id)


async def resolve_child_flow(
    conn: psycopg.AsyncConnection[Any], step: ClaimedStep, flow_id: str, version: int | None
) -> int:
    row = await shares.subflow_access(conn, step.owner_id, flow_id)
    if row is None or not (row.edits or row.shared):
        raise NodeError(f"subflow {flow_id} not found", retryable=False)
    if not row.edits:  # shared with the run's owner: the published version the share grants
        published = row.published_version
        if published is None or row.granted != published or version not in (None, published):
            raise NodeError(
                f"subflow {flow_id}: shared users run only its published version, once their"
                " share grants it (accept it: POST /api/v1/flows/{id}/shares/accept)",
                retryable=False,
            )
    pinned = version or row.version
    if not 1 <= pinned <= row.latest:
        raise NodeError(f"subflow {flow_id} has no version {pinned}", retryable=False)
    return int(pinned)
