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
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.checkpoint import max_attempts_of
from flowstudio.engine.states import STEP_LIVE
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
