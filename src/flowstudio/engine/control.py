"""Run control beyond the happy path: resume, signals, fork, and the timeout of a signal wait.

Called by the API (`api/run_control.py`), the worker's wait commit and the orchestrator's timer loop,
always inside a `run_transaction` (run row locked):
- `resume_run(txn, graph)`: a failed/cancelled run goes back to `queued`; its failed and cancelled
  steps reopen (`pending`, with a fresh attempt budget) and the planner readies them; committed steps
  stay committed and never run again.
- `deliver_signal(txn, graph, node_id, payload)`: buffers the signal row; if the node is waiting for a
  signal, consumes it at once (the step succeeds with the payload on its `out` port) and advances.
  `consume_buffered_signal` is the other half: a node that starts waiting picks up a signal that came
  early (signals are durable rows, never lost to timing).
- `fire_signal_timeout(txn, graph, step)`: a signal wait whose due time passed fails or continues on
  its `timeout` port, as the node's params say.
- `fork_run(conn, parent, graph, from_node, inputs, owner_id)`: a new run of the same pinned version
  that copies the parent's committed steps not downstream of `from_node` and runs the rest.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.advance import advance_run, fail_run
from flowstudio.engine.runtxn import OutboxMessage, RunTxn, run_transaction
from flowstudio.flows.graph import FlowGraph


def _max_attempts(graph: FlowGraph) -> tuple[list[str], list[int]]:
    nodes = list(graph.nodes)
    return nodes, [
        retry.max_attempts if (retry := graph.nodes[n].data.retry) is not None else 1 for n in nodes
    ]


async def resume_run(txn: RunTxn, graph: FlowGraph) -> None:
    nodes, maxes = _max_attempts(graph)
    await txn.move_steps(
        "reopen",
        "TRUE",
        {"nodes": nodes, "maxes": maxes},
        set_sql="error = NULL, finished_at = NULL, due_at = NULL, max_attempts = s.attempt + "
        "coalesce((SELECT m FROM unnest(%(nodes)s::text[], %(maxes)s::int[]) AS u(n, m) "
        "WHERE u.n = s.node_id), 1)",
        data={"reason": "resume"},
    )
    txn.move_run("resume", error=None, outputs=None, finished_at=None)
    await advance_run(txn, graph)


def _signal_branch(graph: FlowGraph, node_id: str) -> str | None:
    from flowstudio.nodes import registry

    spec = registry.get(graph.nodes[node_id].type)
    return "out" if spec is not None and len(spec.outputs) > 1 else None


async def _finish_with_signal(
    txn: RunTxn, graph: FlowGraph, step_id: int, node_id: str, signal_id: int, payload: Any
) -> bool:
    moved = await txn.move_steps(
        "finish_wait",
        "s.id = %(step)s",
        {"step": step_id, "branch": _signal_branch(graph, node_id)},
        set_sql="due_at = NULL, finished_at = now(), branch = %(branch)s",
        data={"signal_id": signal_id},
    )
    if not moved:
        return False
    await txn.conn.execute("UPDATE signals SET consumed_at = now() WHERE id = %s", (signal_id,))
    await txn.conn.execute(
        "UPDATE step_io SET output = %s WHERE step_id = %s", (Jsonb(payload), step_id)
    )
    await advance_run(txn, graph)
    return True


async def consume_buffered_signal(
    txn: RunTxn, graph: FlowGraph, step_id: int, node_id: str, item_index: int
) -> bool:
    cur = await txn.conn.execute(
        """SELECT id, payload FROM signals WHERE run_id = %s AND node_id = %s AND item_index = %s
           AND consumed_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE""",
        (txn.run["id"], node_id, item_index),
    )
    sig = await cur.fetchone()
    if sig is None:
        return False
    return await _finish_with_signal(txn, graph, step_id, node_id, sig["id"], sig["payload"])


async def deliver_signal(
    txn: RunTxn, graph: FlowGraph, node_id: str, payload: Any, item_index: int = 0
) -> bool:
    """Store the signal; returns True if a waiting step consumed it now (else it stays buffered)."""
    cur = await txn.conn.execute(
        "INSERT INTO signals (run_id, node_id, item_index, payload) VALUES (%s, %s, %s, %s) "
        "RETURNING id",
        (txn.run["id"], node_id, item_index, Jsonb(payload)),
    )
    row = await cur.fetchone()
    assert row is not None
    txn.event("signal", node_id=node_id, item_index=item_index, data={"signal_id": row["id"]})
    cur = await txn.conn.execute(
        """SELECT id FROM steps WHERE run_id = %s AND node_id = %s AND item_index = %s
           AND status = 'waiting' AND node_type = 'wait_for_signal'""",
        (txn.run["id"], node_id, item_index),
    )
    step = await cur.fetchone()
    if step is None:
        return False
    return await _finish_with_signal(txn, graph, step["id"], node_id, row["id"], payload)


async def fire_signal_timeout(txn: RunTxn, graph: FlowGraph, step: dict[str, Any]) -> bool:
    params = graph.nodes[step["node_id"]].data.params
    where = "s.id = %(step)s AND s.due_at <= now()"
    if params.get("on_timeout", "fail") == "fail":
        err = {"message": "timed out waiting for a signal", "type": "timeout"}
        moved = await txn.move_steps(
            "fail",
            where,
            {"step": step["id"], "err": Jsonb(err)},
            set_sql="error = %(err)s, due_at = NULL, finished_at = now()",
            data=err,
        )
        if moved:
            await fail_run(txn, {"node_id": step["node_id"], **err})
        return bool(moved)
    moved = await txn.move_steps(
        "finish_wait",
        where,
        {"step": step["id"]},
        set_sql="due_at = NULL, finished_at = now(), branch = 'timeout'",
        data={"timer": "signal timeout"},
    )
    if moved:
        await txn.conn.execute(
            "UPDATE step_io SET output = %s WHERE step_id = %s",
            (Jsonb({"timed_out": True}), step["id"]),
        )
        await advance_run(txn, graph)
    return bool(moved)


def descendants(graph: FlowGraph, node_id: str) -> set[str]:
    seen = {node_id}
    stack = [node_id]
    while stack:
        for edge in graph.outgoing(stack.pop()):
            if edge.target not in seen:
                seen.add(edge.target)
                stack.append(edge.target)
    return seen


async def fork_run(
    conn: psycopg.AsyncConnection[Any],
    parent: dict[str, Any],
    graph: FlowGraph,
    from_node: str,
    inputs: dict[str, Any] | None,
    owner_id: str,
) -> tuple[str, list[OutboxMessage]]:
    rerun = descendants(graph, from_node)
    run_id = uuid.uuid4()
    nodes, maxes = _max_attempts(graph)
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO runs (id, flow_id, flow_version, owner_id, inputs, tweaks,
                                 parent_run_id, fork_of_node)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                run_id,
                parent["flow_id"],
                parent["flow_version"],
                owner_id,
                Jsonb(inputs if inputs is not None else parent["inputs"]),
                Jsonb(parent.get("tweaks") or {}),
                parent["id"],
                from_node,
            ),
        )
        await conn.execute(
            """INSERT INTO steps (run_id, node_id, item_index, node_type, status, attempt,
                                  max_attempts, branch, created_at, ready_at, started_at, finished_at)
               SELECT %(run)s, p.node_id, p.item_index, p.node_type, p.status, p.attempt,
                      p.max_attempts, p.branch, p.created_at, p.ready_at, p.started_at,
                      p.finished_at
               FROM steps p WHERE p.run_id = %(parent)s AND p.status IN ('succeeded', 'skipped')
                 AND NOT (p.node_id = ANY(%(rerun)s))""",
            {"run": run_id, "parent": parent["id"], "rerun": list(rerun)},
        )
        await conn.execute(
            """INSERT INTO step_io (step_id, input, output)
               SELECT c.id, io.input, io.output FROM steps c
               JOIN steps p ON p.run_id = %s AND p.node_id = c.node_id
                           AND p.item_index = c.item_index
               JOIN step_io io ON io.step_id = p.id
               WHERE c.run_id = %s""",
            (parent["id"], run_id),
        )
        await conn.execute(
            """INSERT INTO steps (run_id, node_id, node_type, max_attempts)
               SELECT %s, u.n, u.t, u.m FROM unnest(%s::text[], %s::text[], %s::int[]) AS u(n, t, m)
               WHERE NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = %s AND s.node_id = u.n)""",
            (run_id, nodes, [graph.nodes[n].type for n in nodes], maxes, run_id),
        )
        async with run_transaction(conn, run_id) as txn:
            txn.event(
                "run",
                to_status="queued",
                data={"forked_from": str(parent["id"]), "from_node": from_node},
            )
            cur = await conn.execute(
                "SELECT id, node_id, item_index, attempt, status FROM steps "
                "WHERE run_id = %s AND status <> 'pending' ORDER BY id",
                (run_id,),
            )
            for s in await cur.fetchall():
                txn.step_event(s, None, s["status"], {"copied_from_run": str(parent["id"])})
            await advance_run(txn, graph)
    return str(run_id), txn.outbox
