"""Fan-out/fan-in for `map`: each item is its own checkpointed step (item_index 1..N).

The `map` node's own step (item_index 0) evaluates its items and returns `Expand(items)`; the worker
commits it with `expand_map` (one transaction): the step parks in `waiting`, one step row per item is
inserted with the item as its input (idempotent on re-expansion after a resume: existing rows are
kept), and the first `concurrency` items become ready. Every item commit calls `advance_map`, which
readies the next pending items to keep `concurrency` live, applies the failure policy (fail fast:
the map step and the run fail; continue: the failed item's error takes its place in the results) and,
when no item is live, finishes the map step with the results in item order and advances the run.
`settle_item` is the one entry point after any item moved: it routes an agent's tool-call items to
`advance_agent` (wake the agent for its next turn) and map items to `advance_map`.
Per-commit work uses partial indexes over pending/live items only, so it stays cheap at 100k items.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from flowstudio.engine.advance import advance_run, fail_run
from flowstudio.engine.runtxn import RunTxn
from flowstudio.flows.graph import FlowGraph


def map_settings(graph: FlowGraph, node_id: str) -> tuple[int, str, str, int]:
    params = graph.nodes[node_id].data.params
    body = params.get("body") or {}
    body_type = "subflow" if body.get("flow_id") else str(body.get("type", "noop"))
    retry = (body.get("retry") or {}).get("max_attempts", 1)
    return (
        int(params.get("concurrency", 10)),
        str(params.get("on_error", "fail_fast")),
        body_type,
        int(retry),
    )


async def expand_map(
    txn: RunTxn, graph: FlowGraph, step_id: int, node_id: str, items: list[Any]
) -> None:
    concurrency, _, body_type, max_attempts = map_settings(graph, node_id)
    run_id = txn.run["id"]
    async with txn.conn.cursor() as cur:
        await cur.execute(
            """INSERT INTO steps (run_id, node_id, item_index, node_type, max_attempts)
               SELECT %s, %s, i, %s, %s FROM generate_series(1, %s) AS i
               ON CONFLICT (run_id, node_id, item_index) DO NOTHING""",
            (run_id, node_id, body_type, max_attempts, len(items)),
        )
        await cur.execute(
            """INSERT INTO step_io (step_id, input)
               SELECT s.id, e.item FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(item, i)
               JOIN steps s ON s.run_id = %s AND s.node_id = %s AND s.item_index = e.i
               ON CONFLICT (step_id) DO NOTHING""",
            (Jsonb(items), run_id, node_id),
        )
    txn.event("map", step_id=step_id, node_id=node_id, data={"items": len(items)})
    await advance_map(txn, graph, node_id, concurrency_hint=concurrency)


async def _live_items(txn: RunTxn, node_id: str) -> int:
    cur = await txn.conn.execute(
        """SELECT count(*) AS n FROM steps WHERE run_id = %s AND node_id = %s AND item_index > 0
           AND status IN ('ready', 'running', 'retrying', 'waiting')""",
        (txn.run["id"], node_id),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def advance_map(
    txn: RunTxn,
    graph: FlowGraph,
    node_id: str,
    *,
    failed_item: int | None = None,
    concurrency_hint: int | None = None,
) -> None:
    """Called in the transaction that moved an item (or expanded the map)."""
    concurrency, on_error, _, _ = map_settings(graph, node_id)
    parent = await txn.conn.execute(
        "SELECT id, status FROM steps WHERE run_id = %s AND node_id = %s AND item_index = 0",
        (txn.run["id"], node_id),
    )
    prow = await parent.fetchone()
    if prow is None or prow["status"] != "waiting":
        return
    if failed_item is not None and on_error == "fail_fast":
        err = {
            "message": f"map item {failed_item} failed",
            "node_id": node_id,
            "item_index": failed_item,
        }
        moved = await txn.move_steps(
            "fail",
            "s.id = %(step)s",
            {"step": prow["id"], "err": Jsonb(err)},
            set_sql="error = %(err)s, finished_at = now()",
            data=err,
        )
        if moved:
            await fail_run(txn, err)
        return
    live = await _live_items(txn, node_id)
    room = max(0, (concurrency_hint or concurrency) - live)
    if room:
        await txn.move_steps(
            "ready",
            "s.id IN (SELECT id FROM steps WHERE run_id = %(run)s AND node_id = %(node)s "
            "AND item_index > 0 AND status = 'pending' ORDER BY item_index LIMIT %(room)s)",
            {"run": txn.run["id"], "node": node_id, "room": room},
            set_sql="ready_at = now(), dispatched_at = now()",
        )
        live = await _live_items(txn, node_id)
    if live:
        return
    pending = await txn.conn.execute(
        """SELECT 1 FROM steps WHERE run_id = %s AND node_id = %s AND item_index > 0
           AND status = 'pending' LIMIT 1""",
        (txn.run["id"], node_id),
    )
    if await pending.fetchone() is not None:
        return
    await finish_map(txn, graph, prow["id"], node_id)


async def finish_map(txn: RunTxn, graph: FlowGraph, parent_step_id: int, node_id: str) -> None:
    cur = await txn.conn.execute(
        """SELECT s.item_index, s.status, s.error, io.output FROM steps s
           LEFT JOIN step_io io ON io.step_id = s.id
           WHERE s.run_id = %s AND s.node_id = %s AND s.item_index > 0 ORDER BY s.item_index""",
        (txn.run["id"], node_id),
    )
    results = []
    failed = 0
    for row in await cur.fetchall():
        if row["status"] == "succeeded":
            results.append(row["output"])
        else:
            failed += 1
            results.append({"error": row["error"], "status": row["status"]})
    moved = await txn.move_steps(
        "finish_wait",
        "s.id = %(step)s",
        {"step": parent_step_id},
        set_sql="finished_at = now(), due_at = NULL",
        data={"items": len(results), "failed_items": failed},
    )
    if moved:
        await txn.conn.execute(
            "UPDATE step_io SET output = %s WHERE step_id = %s", (Jsonb(results), parent_step_id)
        )
        await advance_run(txn, graph)


async def advance_agent(txn: RunTxn, graph: FlowGraph, node_id: str) -> None:
    """Wake the agent step once none of its tool calls is live."""
    cur = await txn.conn.execute(
        """SELECT 1 FROM steps WHERE run_id = %s AND node_id = %s AND item_index > 0
           AND status IN ('pending', 'ready', 'running', 'retrying', 'waiting') LIMIT 1""",
        (txn.run["id"], node_id),
    )
    if await cur.fetchone() is not None:
        return
    await txn.move_steps(
        "wake",
        "s.node_id = %(node)s AND s.item_index = 0",
        {"node": node_id, "budget": _retry_budget(graph, node_id)},
        set_sql="ready_at = now(), dispatched_at = now(), max_attempts = s.attempt + %(budget)s",
        data={"reason": "tool calls finished"},
    )


def _retry_budget(graph: FlowGraph, node_id: str) -> int:
    retry = graph.nodes[node_id].data.retry
    return retry.max_attempts if retry else 1


async def settle_item(
    txn: RunTxn, graph: FlowGraph, node_id: str, item_index: int, *, failed: bool = False
) -> None:
    """After an item step moved: an agent's tool call wakes the agent, a map item advances the map."""
    if graph.nodes[node_id].type == "agent":
        await advance_agent(txn, graph, node_id)
    else:
        await advance_map(txn, graph, node_id, failed_item=item_index if failed else None)
