"""SQL of batches: the batch row and its status moves, per-state counts, results pages, dispatch picks.

The API (`api/batches.py`) creates and reads batches through these; the batch engine
(`engine/batches.py`) loads, dispatches, finishes and cancels them. Batch status moves are guarded
UPDATEs (`... WHERE status = ANY(expected)`): loading -> running -> succeeded, loading | running ->
cancelled | failed; a move that finds the batch elsewhere changes nothing and returns None.
A run counts as *started* once the dispatcher advanced it (`UNSTARTED` says which are not).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

BATCH_COLS = """id, flow_id, flow_version, owner_id, status, total, error, created_at, loaded_at,
                finished_at"""
LIVE = ("queued", "running", "waiting")
# A batch run the dispatcher has not started yet: queued with only its `run -> queued` event
# (engine/bulk.py writes it so; start_run-made and dispatched runs always have event_seq >= 2).
UNSTARTED = "status = 'queued' AND event_seq = 1"


async def create_batch(
    conn: psycopg.AsyncConnection[Any],
    *,
    batch_id: Any,
    flow_id: Any,
    version: int,
    owner_id: Any,
    total: int,
) -> None:
    await conn.execute(
        """INSERT INTO batches (id, flow_id, flow_version, owner_id, status, total)
           VALUES (%s, %s, %s, %s, 'loading', %s)""",
        (batch_id, flow_id, version, owner_id, total),
    )


async def live_items(conn: psycopg.AsyncConnection[Any], owner_id: Any) -> int:
    """The owner's batch runs not yet terminal, over all their loading/running batches."""
    cur = await conn.execute(
        """SELECT count(*) AS n FROM batches b JOIN runs r ON r.batch_id = b.id
           WHERE b.owner_id = %s AND b.status IN ('loading', 'running')
             AND r.status IN ('queued', 'running', 'waiting')""",
        (owner_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def get_batch(conn: psycopg.AsyncConnection[Any], batch_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {BATCH_COLS} FROM batches WHERE id = %s", (batch_id,))
    return await cur.fetchone()


async def list_batches(
    conn: psycopg.AsyncConnection[Any], *, owner_id: str | None, flow_id: Any | None, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {BATCH_COLS} FROM batches
            WHERE (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
              AND (%(flow)s::uuid IS NULL OR flow_id = %(flow)s::uuid)
            ORDER BY created_at DESC LIMIT %(limit)s""",
        {"owner": owner_id, "flow": flow_id, "limit": limit},
    )
    return await cur.fetchall()


async def run_counts(conn: psycopg.AsyncConnection[Any], batch_id: Any) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT status, count(*) AS n FROM runs WHERE batch_id = %s GROUP BY status", (batch_id,)
    )
    return {r["status"]: r["n"] for r in await cur.fetchall()}


async def results_page(
    conn: psycopg.AsyncConnection[Any], batch_id: Any, after_index: int, limit: int
) -> list[dict[str, Any]]:
    """Runs in input order after `after_index`; outputs/error as JSON text (streamed unparsed)."""
    cur = await conn.execute(
        """SELECT batch_index, id, status, outputs::text AS outputs, error::text AS error
           FROM runs WHERE batch_id = %s AND batch_index > %s
           ORDER BY batch_index LIMIT %s""",
        (batch_id, after_index, limit),
    )
    return await cur.fetchall()


async def move_batch(
    conn: psycopg.AsyncConnection[Any],
    batch_id: Any,
    expected: tuple[str, ...],
    dest: str,
    *,
    error: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Guarded status move; terminal moves stamp finished_at, running stamps loaded_at."""
    cur = await conn.execute(
        f"""UPDATE batches SET status = %(dest)s,
                   error = coalesce(%(error)s, error),
                   loaded_at = CASE WHEN %(dest)s = 'running' THEN now() ELSE loaded_at END,
                   finished_at = CASE WHEN %(dest)s IN ('succeeded', 'failed', 'cancelled')
                                      THEN now() ELSE finished_at END
            WHERE id = %(id)s AND status = ANY(%(expected)s)
            RETURNING {BATCH_COLS}""",
        {
            "dest": dest,
            "error": Jsonb(error) if error is not None else None,
            "id": batch_id,
            "expected": list(expected),
        },
    )
    return await cur.fetchone()


async def lock_batch_status(
    conn: psycopg.AsyncConnection[Any], batch_id: Any, *, share: bool = False
) -> str | None:
    """Status of the batch, row-locked for this transaction (FOR SHARE for the loader)."""
    mode = "SHARE" if share else "NO KEY UPDATE"
    cur = await conn.execute(f"SELECT status FROM batches WHERE id = %s FOR {mode}", (batch_id,))
    row = await cur.fetchone()
    return row["status"] if row else None


async def lock_running_batch(
    conn: psycopg.AsyncConnection[Any], batch_id: Any
) -> dict[str, Any] | None:
    """The batch if it is running and no other dispatcher holds it (SKIP LOCKED)."""
    cur = await conn.execute(
        f"""SELECT {BATCH_COLS} FROM batches WHERE id = %s AND status = 'running'
            FOR NO KEY UPDATE SKIP LOCKED""",
        (batch_id,),
    )
    return await cur.fetchone()


async def batch_ids(
    conn: psycopg.AsyncConnection[Any], statuses: tuple[str, ...], limit: int = 1000
) -> list[Any]:
    cur = await conn.execute(
        "SELECT id FROM batches WHERE status = ANY(%s) ORDER BY created_at LIMIT %s",
        (list(statuses), limit),
    )
    return [r["id"] for r in await cur.fetchall()]


async def started_live_count(conn: psycopg.AsyncConnection[Any], batch_id: Any) -> int:
    """Live runs of the batch the dispatcher already started (what BATCH_CONCURRENCY limits).

    Running/waiting runs come from the (batch_id, status) index; a started run that is still
    `queued` has a ready step no worker claimed yet, so those are found from the (small) set of
    ready steps instead of scanning the batch's unstarted runs. MATERIALIZED makes that the plan:
    a freshly loaded batch has no statistics yet, and the planner, guessing one queued run, looped
    over every unstarted run instead (1.4 s per dispatch pass with 9,000 of them, 1.6 ms now).
    """
    cur = await conn.execute(
        """WITH ready AS MATERIALIZED (SELECT DISTINCT run_id FROM steps WHERE status = 'ready')
           SELECT (SELECT count(*) FROM runs WHERE batch_id = %(b)s
                   AND status IN ('running', 'waiting'))
                + (SELECT count(*) FROM ready JOIN runs r ON r.id = ready.run_id
                   WHERE r.batch_id = %(b)s AND r.status = 'queued') AS n""",
        {"b": batch_id},
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def pick_unstarted(
    conn: psycopg.AsyncConnection[Any], batch_id: Any, limit: int
) -> list[Any]:
    """Lock up to `limit` unstarted runs (SKIP LOCKED), roughly in input order."""
    cur = await conn.execute(
        f"""SELECT id FROM runs WHERE batch_id = %s AND {UNSTARTED}
            LIMIT %s FOR UPDATE SKIP LOCKED""",
        (batch_id, limit),
    )
    return [r["id"] for r in await cur.fetchall()]


async def started_live_ids(
    conn: psycopg.AsyncConnection[Any], batch_id: Any, after_index: int, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT id, batch_index FROM runs
            WHERE batch_id = %s AND status = ANY(%s) AND NOT ({UNSTARTED}) AND batch_index > %s
            ORDER BY batch_index LIMIT %s""",
        (batch_id, list(LIVE), after_index, limit),
    )
    return await cur.fetchall()


async def has_unstarted(conn: psycopg.AsyncConnection[Any], batch_id: Any) -> bool:
    cur = await conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM runs WHERE batch_id = %s AND {UNSTARTED}) AS x",
        (batch_id,),
    )
    row = await cur.fetchone()
    return bool(row and row["x"])


async def finish_if_done(conn: psycopg.AsyncConnection[Any], batch_id: Any) -> bool:
    """running -> succeeded once no run of the batch is live (failed runs still count as done)."""
    cur = await conn.execute(
        """UPDATE batches SET status = 'succeeded', finished_at = now()
           WHERE id = %(id)s AND status = 'running'
             AND NOT EXISTS (SELECT 1 FROM runs WHERE batch_id = %(id)s
                             AND status IN ('queued', 'running', 'waiting'))
           RETURNING id""",
        {"id": batch_id},
    )
    return await cur.fetchone() is not None


async def try_loader_gone(
    conn: psycopg.AsyncConnection[Any], lock_class: int, batch_id: Any
) -> bool:
    """True if nobody holds the loader's advisory lock of this batch (taken for this transaction)."""
    cur = await conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS free", (lock_class, str(batch_id))
    )
    row = await cur.fetchone()
    return bool(row and row["free"])


async def loaded_count(conn: psycopg.AsyncConnection[Any], batch_id: Any) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM runs WHERE batch_id = %s", (batch_id,))
    row = await cur.fetchone()
    return int(row["n"]) if row else 0
