"""The bulk path for batches: insert many runs (and cancel many unstarted ones) in set-based statements.

`insert_batch_runs(conn, ...)` writes, for a chunk of items inside the caller's transaction, exactly the
rows `checkpoint.start_run` writes for one run, minus what the dispatcher adds later: the run row
(`queued`, with batch_id/batch_index, event_seq = 1), one `pending` step row per node, and the single
event `run -> queued` (seq 1). It uses COPY, so a chunk of 1000 runs is three round trips. Such a run
is *unstarted* (`store.batches.UNSTARTED`: queued with only its first event); `engine/batches.py` later starts a few
at a time through the normal engine path (`run_transaction` + `advance_run`, which readies the roots,
logs seq 2.. and writes the outbox), so `start_run` and bulk-then-dispatch end in identical rows.

`cancel_unstarted_runs(conn, batch_id, reason, limit)` is `advance.cancel_run` for up to `limit`
unstarted runs in one statement: every step pending -> cancelled (one event each, seq 2..n+1), then the
run queued -> cancelled (seq n+2, with the same error and data cancel_run logs), runs.event_seq = n+2.
Runs are taken with FOR UPDATE SKIP LOCKED, so it is safe next to the dispatcher and other cancellers
(`skip_locked=False` waits for them instead, to know the batch is done).
Neither function sends pg_notify: nobody follows the event stream of a run that never started.

`start_unstarted_runs(conn, run_ids, nodes)` is the dispatcher's start of many unstarted runs (locked
by `store.pick_unstarted` in the caller's transaction) in ONE statement: what `advance_run` writes
for each, run by run, in a savepoint and five statements. An unstarted run's steps are all pending,
so the plan is the graph's alone (`start_nodes`: its roots become ready; nothing is skipped, the
run stays `queued` until its first claim): those steps pending -> ready with READY_SET, their event
rows (seq 2.., in step id order), the runs' counter, the outbox rows in pick order and the
NOTIFY (`{run}:{seq}`) of each run someone follows (`runs.watched_until`, migration 0034), exactly
the general path's rows (tests/engine/test_batch_start.py).

`folded_start(graph)` / `start_runs_folded(conn, run_ids, root, ready)`: when the flow's one root
is a pass-through `input` (no params: it outputs the run's inputs) whose success readies its
successors alone (`planner.chain_successors`), the dispatcher (with FOLD_STEPS) starts the runs
past it: one call of migration 0033's `start_runs_folded` writes what the root's dispatch, claim
and success would have written (tests/engine/test_fold_input.py); the messages are the
successors'.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.checkpoint import max_attempts_of
from flowstudio.engine.planner import StepState, chain_successors, plan, run_state
from flowstudio.engine.runtxn import NOTIFY_CHANNEL, OutboxMessage
from flowstudio.engine.states import STEP_LIVE, step_move
from flowstudio.engine.txnsql import READY_SET
from flowstudio.flows.graph import FlowGraph
from flowstudio.store.batches import UNSTARTED, NewBatch


async def insert_batch_runs(
    conn: psycopg.AsyncConnection[Any],
    batch: NewBatch,
    *,
    first_index: int,
    items: Sequence[bytes],
    graph: FlowGraph,
) -> None:
    """Insert one chunk of unstarted runs; `items` are the runs' inputs as JSON object bytes."""
    run_ids = [uuid.uuid4() for _ in items]
    nodes = [(n.id, n.type, max_attempts_of(graph, n.id)) for n in graph.definition.nodes]
    async with conn.cursor() as cur:
        async with cur.copy(
            """COPY runs (id, flow_id, flow_version, owner_id, inputs, batch_id, batch_index,
                          event_seq) FROM STDIN"""
        ) as copy:
            for i, (run_id, inputs) in enumerate(zip(run_ids, items, strict=True)):
                await copy.write_row(
                    (
                        run_id,
                        batch.flow_id,
                        batch.flow_version,
                        batch.owner_id,
                        inputs.decode(),
                        batch.id,
                        first_index + i,
                        1,
                    )
                )
        async with cur.copy(
            "COPY steps (run_id, node_id, node_type, max_attempts) FROM STDIN"
        ) as copy:
            for run_id in run_ids:
                for node_id, node_type, max_attempts in nodes:
                    await copy.write_row((run_id, node_id, node_type, max_attempts))
        async with cur.copy("COPY run_events (run_id, seq, kind, to_status) FROM STDIN") as copy:
            for run_id in run_ids:
                await copy.write_row((run_id, 1, "run", "queued"))
        # start_run's flush sets updated_at = now() too; COPY's defaults already did (same now()).


CANCEL_UNSTARTED = f"""
WITH picked AS (
    SELECT id FROM runs
    WHERE batch_id = %(batch)s AND {UNSTARTED}
    LIMIT %(limit)s FOR UPDATE {{lock}}
), moved AS (
    UPDATE steps s SET status = 'cancelled', finished_at = now(), lease_owner = NULL,
                       lease_expires_at = NULL, due_at = NULL
    FROM steps old, picked p
    WHERE old.id = s.id AND s.run_id = p.id AND s.status = ANY(%(live)s)
    RETURNING s.id, s.run_id, s.node_id, s.item_index, s.attempt, old.status AS from_status
), counts AS (
    SELECT p.id AS run_id, count(m.id) AS n
    FROM picked p LEFT JOIN moved m ON m.run_id = p.id GROUP BY p.id
), step_events AS (
    INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index, attempt,
                            from_status, to_status, data)
    SELECT run_id, 1 + row_number() OVER (PARTITION BY run_id ORDER BY id), 'step', id, node_id,
           item_index, attempt, from_status, 'cancelled', %(step_data)s
    FROM moved
), run_event AS (
    INSERT INTO run_events (run_id, seq, kind, from_status, to_status, data)
    SELECT run_id, n + 2, 'run', 'queued', 'cancelled', %(error)s FROM counts
), runs_moved AS (
    UPDATE runs r SET status = 'cancelled', error = %(error)s,
                      finished_at = coalesce(r.finished_at, now()), updated_at = now(),
                      event_seq = c.n + 2
    FROM counts c WHERE r.id = c.run_id
    RETURNING r.id
)
SELECT count(*) AS n FROM runs_moved
"""


async def cancel_unstarted_runs(
    conn: psycopg.AsyncConnection[Any],
    batch_id: Any,
    reason: str,
    limit: int,
    *,
    skip_locked: bool = True,
) -> int:
    """Cancel up to `limit` unstarted runs of the batch (one statement); returns how many.

    With `skip_locked=False` it waits for runs another canceller holds (and then finds them gone).
    """
    cur = await conn.execute(
        CANCEL_UNSTARTED.format(lock="SKIP LOCKED" if skip_locked else ""),
        {
            "batch": batch_id,
            "limit": limit,
            "live": list(STEP_LIVE),
            "step_data": Jsonb({"reason": reason}),
            "error": Jsonb({"message": reason}),
        },
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


@lru_cache(maxsize=256)
def start_nodes(graph: FlowGraph) -> tuple[str, ...]:
    """The nodes `advance_run` makes ready in a run whose steps are all pending (its roots), or ()
    when starting it plans anything else (a skip, or no ready step): the general path starts it."""
    states = {n.id: StepState("pending") for n in graph.definition.nodes}
    decided = plan(graph, states)
    if decided.skipped or not decided.ready or run_state(states) != "running":
        return ()
    return tuple(decided.ready)


READY_SOURCES, READY_DEST = step_move("ready")
START_RUNS = f"""
WITH picked AS (
    SELECT p.id, p.ord FROM unnest(%(runs)s::uuid[]) WITH ORDINALITY AS p(id, ord)
), rd AS (
    UPDATE steps s SET status = %(dest)s, {READY_SET}
      FROM picked p
     WHERE s.run_id = p.id AND s.status = %(source)s AND s.item_index = 0
       AND s.node_id = ANY(%(nodes)s)
    RETURNING s.id, s.run_id, s.node_id, s.attempt, p.ord
), num AS (
    SELECT rd.*, row_number() OVER (PARTITION BY rd.run_id ORDER BY rd.id)::int AS k FROM rd
), r AS (
    UPDATE runs SET event_seq = runs.event_seq + c.n, updated_at = now()
      FROM (SELECT run_id, count(*)::int AS n FROM rd GROUP BY run_id) c
     WHERE runs.id = c.run_id
    RETURNING runs.id, runs.event_seq, c.n, runs.watched_until
), ev AS (
    INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index, attempt,
                            from_status, to_status, data)
    SELECT num.run_id, r.event_seq - r.n + num.k, 'step', num.id, num.node_id, 0, num.attempt,
           %(source)s, %(dest)s, NULL
      FROM num JOIN r ON r.id = num.run_id
), ob AS (
    INSERT INTO outbox (run_id, step_id, token)
    SELECT run_id, id, attempt FROM num ORDER BY ord, id
    RETURNING id, run_id, step_id, token
), nt AS (
    SELECT pg_notify(%(channel)s, r.id::text || ':' || r.event_seq) FROM r
     WHERE r.watched_until >= now()  -- only a followed run (migration 0034)
)
SELECT (SELECT count(*) FROM nt) AS notified,
       ARRAY(SELECT r.id FROM r) AS started,
       ARRAY(SELECT ob.id FROM ob ORDER BY ob.id) AS ob_ids,
       ARRAY(SELECT ob.run_id FROM ob ORDER BY ob.id) AS ob_runs,
       ARRAY(SELECT ob.step_id FROM ob ORDER BY ob.id) AS ob_steps,
       ARRAY(SELECT ob.token FROM ob ORDER BY ob.id) AS ob_tokens
"""
assert READY_SOURCES == ["pending"]  # (a single source: the events name it)


async def start_unstarted_runs(
    conn: psycopg.AsyncConnection[Any], run_ids: Sequence[Any], nodes: Sequence[str]
) -> tuple[list[OutboxMessage], list[Any]]:
    """Start `run_ids` (unstarted, locked by the caller) by making `nodes` (`start_nodes`) ready;
    returns the outbox messages to publish after commit and the runs it did NOT start (none unless
    a run was not unstarted after all: the caller starts those through the general path)."""
    cur = await conn.execute(
        START_RUNS,
        {
            "runs": list(run_ids),
            "nodes": list(nodes),
            "source": READY_SOURCES[0],
            "dest": READY_DEST,
            "channel": NOTIFY_CHANNEL,
        },
    )
    return await _started(cur, run_ids)


async def _started(
    cur: psycopg.AsyncCursor[Any], run_ids: Sequence[Any]
) -> tuple[list[OutboxMessage], list[Any]]:
    """A start statement's row: its outbox messages, and the runs it did not start."""
    row = await cur.fetchone()
    assert row is not None
    messages = [
        OutboxMessage(i, str(r), s, t)
        for i, r, s, t in zip(
            row["ob_ids"], row["ob_runs"], row["ob_steps"], row["ob_tokens"], strict=True
        )
    ]
    started = {str(r) for r in row["started"]}
    return messages, [r for r in run_ids if str(r) not in started]


@lru_cache(maxsize=256)
def folded_start(graph: FlowGraph) -> tuple[str, tuple[str, ...]] | None:
    """(root, the successors its success readies) when the flow's start can be folded: its one
    start node is an `input` without params whose successors wait on it alone; else None."""
    roots = start_nodes(graph)
    if len(roots) != 1:
        return None
    node = graph.nodes[roots[0]]
    if node.type != "input" or node.data.params:
        return None
    ready = chain_successors(graph, node.id, None)
    return (node.id, ready) if ready else None


START_FOLDED = "SELECT * FROM start_runs_folded(%(runs)s::uuid[], %(root)s, %(ready)s, %(channel)s)"


async def start_runs_folded(
    conn: psycopg.AsyncConnection[Any], run_ids: Sequence[Any], root: str, ready: Sequence[str]
) -> tuple[list[OutboxMessage], list[Any]]:
    """`start_unstarted_runs`, past the pass-through root (`folded_start`): the messages are its
    successors'. Returns them and the runs it did not start (the caller starts those)."""
    cur = await conn.execute(
        START_FOLDED,
        {"runs": list(run_ids), "root": root, "ready": list(ready), "channel": NOTIFY_CHANNEL},
    )
    return await _started(cur, run_ids)
