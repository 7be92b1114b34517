"""Read side of runs for the API: run rows, their steps with payloads, the event log, listings;
and for the worker `step_input` (the item a map item step was expanded with) and `run_traceparent`.
`watch_run` is its one write: a live follower's watch of a run (its commits NOTIFY while it lasts).

`list_runs` builds its WHERE from the filters given (see its docstring); migration 0014 adds the
indexes its shapes need (`runs_created`, `runs_status_created`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowstudio.store.db import Conn

RUN_COLS = """id, flow_id, flow_version, owner_id, status, inputs, outputs, error, idempotency_key,
              parent_run_id, fork_of_node, batch_id, batch_index, tweaks, event_seq, created_at,
              started_at, finished_at, updated_at"""


async def get_run(conn: Conn, run_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {RUN_COLS} FROM runs WHERE id = %s", (run_id,))
    return await cur.fetchone()


async def watch_run(conn: Conn, run_id: Any, seconds: float) -> None:
    """Have the engine NOTIFY this run's commits for the next `seconds` (`runs.watched_until`,
    migration 0034: an unwatched run's commits send none). A live follower calls it on an
    autocommit connection before it reads the run, and again before the watch runs out. From the
    clock once the run's row lock is held (the CTE locks first): a plain UPDATE computes its SET
    before it waits for the lock, and keeps that value unless the holder updated the row, so a
    watch that waited behind a `FOR UPDATE` that wrote nothing would be that much shorter."""
    await conn.execute(
        """WITH locked AS (SELECT id FROM runs WHERE id = %s FOR NO KEY UPDATE)
           UPDATE runs r SET watched_until = greatest(r.watched_until,
                                                      clock_timestamp() + make_interval(secs => %s))
             FROM locked WHERE r.id = locked.id""",
        (run_id, seconds),
    )


async def is_batch_item(conn: Conn, run_id: Any) -> bool:
    """Whether the run is an item of a batch (the LLM node streams no tokens for those)."""
    cur = await conn.execute("SELECT batch_id IS NOT NULL AS b FROM runs WHERE id = %s", (run_id,))
    row = await cur.fetchone()
    return bool(row and row["b"])


async def step_input(conn: Conn, step_id: int) -> Any:
    """The input stored with a step (None when it has none)."""
    cur = await conn.execute("SELECT input FROM step_io WHERE step_id = %s", (step_id,))
    row = await cur.fetchone()
    return row["input"] if row else None


async def get_steps(conn: Conn, run_id: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT s.id, s.node_id, s.node_type, s.item_index, s.status, s.attempt, s.max_attempts,
                  s.branch, s.error, s.due_at, s.created_at, s.ready_at, s.started_at,
                  s.finished_at, io.input, io.output
           FROM steps s LEFT JOIN step_io io ON io.step_id = s.id
           WHERE s.run_id = %s ORDER BY s.id""",
        (run_id,),
    )
    return await cur.fetchall()


async def list_runs(
    conn: Conn,
    *,
    owner_id: str | None,
    flow_id: Any | None,
    status: str | None,
    limit: int,
    before: tuple[Any, Any] | None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    batch_id: Any | None = None,
) -> list[dict[str, Any]]:
    """Keyset pagination on (created_at, id) descending; the time window is [after, before).

    The WHERE names only the filters given: a catch-all `(%s IS NULL OR col = %s)` shape lets
    PostgreSQL's generic plan (chosen after a few executions of a prepared statement) scan the
    table even where an index fits; each combination of filters is its own statement instead."""
    given: dict[str, Any] = {
        "owner_id = %(owner)s": owner_id,
        "flow_id = %(flow)s": flow_id,
        "status = %(status)s": status,
        "batch_id = %(batch)s": batch_id,
        "created_at >= %(after)s": created_after,
        "created_at < %(upto)s": created_before,
        "(created_at, id) < (%(ts)s, %(rid)s)": before,
    }
    where = " AND ".join(cond for cond, value in given.items() if value is not None)
    cur = await conn.execute(
        f"""SELECT {RUN_COLS} FROM runs {"WHERE " + where if where else ""}
            ORDER BY created_at DESC, id DESC LIMIT %(limit)s""",
        {
            "owner": owner_id,
            "flow": flow_id,
            "status": status,
            "batch": batch_id,
            "after": created_after,
            "upto": created_before,
            "limit": limit,
            "ts": before[0] if before else None,
            "rid": before[1] if before else None,
        },
    )
    return await cur.fetchall()


async def get_events(
    conn: Conn, run_id: Any, after_seq: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT seq, at, kind, step_id, node_id, item_index, attempt, from_status, to_status, data
           FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s""",
        (run_id, after_seq, limit),
    )
    return await cur.fetchall()


async def run_traceparent(conn: Conn, run_id: Any) -> str | None:
    """The run's stored W3C trace context (None when it was started untraced)."""
    cur = await conn.execute("SELECT traceparent FROM runs WHERE id = %s", (run_id,))
    row = await cur.fetchone()
    return row["traceparent"] if row else None
