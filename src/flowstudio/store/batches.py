"""SQL of batches: the batch row and its status moves, per-state counts, results pages, dispatch picks.

The API (`api/batches.py`) creates and reads batches through these; the batch engine
(`engine/batches.py`) loads, dispatches, finishes and cancels them. Batch status moves are guarded
UPDATEs (`... WHERE status = ANY(sources)`) whose (sources, dest) the engine takes from the batch
machine (`engine/states.py: batch_move`); a move that finds the batch elsewhere changes nothing and
returns None (and the database's trigger, migration 0021, refuses any move the machine lacks).
Status literals in the SQL text come from `store/statuses.py`.
A run counts as *started* once the dispatcher advanced it (`UNSTARTED` says which are not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from flowstudio.store.db import Conn
from flowstudio.store.statuses import (
    BATCH_ENDED_SQL,
    BATCH_LIVE_SQL,
    RUN_ACTIVE_SQL,
    RUN_LIVE,
    RUN_LIVE_SQL,
    BatchStatus,
    BatchStatusName,
    RunStatus,
    StepStatus,
    sql_value,
)

BATCH_COLS = """id, flow_id, flow_version, owner_id, status, total, error, created_at, loaded_at,
                finished_at"""
# A batch run the dispatcher has not started yet: queued with only its `run -> queued` event
# (engine/bulk.py writes it so; start_run-made and dispatched runs always have event_seq >= 2).
UNSTARTED = f"status = {sql_value(RunStatus.QUEUED)} AND event_seq = 1"


@dataclass(frozen=True)
class BatchRow:
    """A batch row as the engine reads it (`BATCH_COLS`)."""

    id: UUID
    flow_id: UUID
    flow_version: int
    owner_id: UUID
    status: BatchStatusName
    total: int
    error: dict[str, Any] | None
    created_at: datetime
    loaded_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class NewBatch:
    """A batch about to be loaded: its flow version, owner and number of items."""

    id: Any
    flow_id: Any
    flow_version: int
    owner_id: Any
    total: int


async def create_batch(conn: Conn, batch: NewBatch) -> None:
    """Insert the batch row, `loading`."""
    await conn.execute(
        """INSERT INTO batches (id, flow_id, flow_version, owner_id, status, total)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (
            batch.id,
            batch.flow_id,
            batch.flow_version,
            batch.owner_id,
            BatchStatus.LOADING.value,
            batch.total,
        ),
    )


async def live_items(conn: Conn, owner_id: Any) -> int:
    """The owner's batch runs not yet terminal, over all their loading/running batches."""
    cur = await conn.execute(
        f"""SELECT count(*) AS n FROM batches b JOIN runs r ON r.batch_id = b.id
            WHERE b.owner_id = %s AND b.status IN {BATCH_LIVE_SQL}
              AND r.status IN {RUN_LIVE_SQL}""",
        (owner_id,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def get_batch(conn: Conn, batch_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {BATCH_COLS} FROM batches WHERE id = %s", (batch_id,))
    return await cur.fetchone()


async def list_batches(
    conn: Conn, *, owner_id: str | None, flow_id: Any | None, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT {BATCH_COLS} FROM batches
            WHERE (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
              AND (%(flow)s::uuid IS NULL OR flow_id = %(flow)s::uuid)
            ORDER BY created_at DESC LIMIT %(limit)s""",
        {"owner": owner_id, "flow": flow_id, "limit": limit},
    )
    return await cur.fetchall()


async def run_counts(conn: Conn, batch_id: Any) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT status, count(*) AS n FROM runs WHERE batch_id = %s GROUP BY status", (batch_id,)
    )
    return {r["status"]: r["n"] for r in await cur.fetchall()}


async def results_page(
    conn: Conn, batch_id: Any, after_index: int, limit: int
) -> list[dict[str, Any]]:
    """Runs in input order after `after_index`; outputs/error as JSON text (streamed unparsed)."""
    cur = await conn.execute(
        """SELECT batch_index, id, status, outputs::text AS outputs, error::text AS error
           FROM runs WHERE batch_id = %s AND batch_index > %s
           ORDER BY batch_index LIMIT %s""",
        (batch_id, after_index, limit),
    )
    return await cur.fetchall()


# The guarded batch move: (sources, dest) from the batch machine; terminal moves stamp finished_at,
# the move to running stamps loaded_at; `%(when_done)s` also requires that no run of it is live.
MOVE_BATCH = f"""UPDATE batches SET status = %(dest)s,
           error = coalesce(%(error)s, error),
           loaded_at = CASE WHEN %(dest)s = {sql_value(BatchStatus.RUNNING)} THEN now()
                            ELSE loaded_at END,
           finished_at = CASE WHEN %(dest)s IN {BATCH_ENDED_SQL} THEN now() ELSE finished_at END
    WHERE id = %(id)s AND status = ANY(%(sources)s)
      AND NOT (%(when_done)s AND EXISTS (SELECT 1 FROM runs WHERE batch_id = %(id)s
                                         AND status IN {RUN_LIVE_SQL}))
    RETURNING {BATCH_COLS}"""


async def move_batch(
    conn: Conn,
    batch_id: Any,
    sources: list[str],
    dest: str,
    *,
    error: dict[str, Any] | None = None,
    when_done: bool = False,
) -> BatchRow | None:
    """Guarded status move (see MOVE_BATCH); None when the batch was not in `sources` (or, with
    `when_done`, still has a live run)."""
    async with conn.cursor(row_factory=class_row(BatchRow)) as cur:
        await cur.execute(
            MOVE_BATCH,
            {
                "dest": dest,
                "error": Jsonb(error) if error is not None else None,
                "id": batch_id,
                "sources": sources,
                "when_done": when_done,
            },
        )
        return await cur.fetchone()


async def lock_batch_status(conn: Conn, batch_id: Any, *, share: bool = False) -> str | None:
    """Status of the batch, row-locked for this transaction. `share` (the loader, per chunk): FOR
    KEY SHARE, which a dispatcher's lock (`lock_dispatchable_batch`) does not wait for, nor a
    cancel's status update: the loader reads the status again before its next chunk and before
    it marks the batch loaded, and cancels what it loaded after a cancel (`engine.batches`)."""
    mode = "KEY SHARE" if share else "NO KEY UPDATE"
    cur = await conn.execute(f"SELECT status FROM batches WHERE id = %s FOR {mode}", (batch_id,))
    row = await cur.fetchone()
    return row["status"] if row else None


async def lock_dispatchable_batch(conn: Conn, batch_id: Any) -> BatchRow | None:
    """The batch if it is live (running, or loading: the runs it has loaded start at once) and no
    other dispatcher holds it (SKIP LOCKED)."""
    async with conn.cursor(row_factory=class_row(BatchRow)) as cur:
        await cur.execute(
            f"""SELECT {BATCH_COLS} FROM batches
                WHERE id = %s AND status IN {BATCH_LIVE_SQL}
                FOR NO KEY UPDATE SKIP LOCKED""",
            (batch_id,),
        )
        return await cur.fetchone()


async def batch_ids(
    conn: Conn, statuses: tuple[str, ...], limit: int = 1000, *, newest_first: bool = False
) -> list[Any]:
    """Ids of batches in `statuses`, oldest first (or newest: the ended batches a sweep looks
    at, whose number only grows)."""
    order = "DESC" if newest_first else "ASC"
    cur = await conn.execute(
        f"SELECT id FROM batches WHERE status = ANY(%s) ORDER BY created_at {order} LIMIT %s",
        (list(statuses), limit),
    )
    return [r["id"] for r in await cur.fetchall()]


async def started_live_count(conn: Conn, batch_id: Any) -> int:
    """Live runs of the batch the dispatcher already started (what BATCH_CONCURRENCY limits).

    Running/waiting runs come from the (batch_id, status) index; a started run that is still
    `queued` has a ready step no worker claimed yet, so those are found from the (small) set of
    ready steps instead of scanning the batch's unstarted runs. MATERIALIZED makes that the plan:
    a freshly loaded batch has no statistics yet, and the planner, guessing one queued run, looped
    over every unstarted run instead (1.4 s per dispatch pass with 9,000 of them, 1.6 ms now).
    """
    cur = await conn.execute(
        f"""WITH ready AS MATERIALIZED (SELECT DISTINCT run_id FROM steps
                                         WHERE status = {sql_value(StepStatus.READY)})
            SELECT (SELECT count(*) FROM runs WHERE batch_id = %(b)s
                    AND status IN {RUN_ACTIVE_SQL})
                 + (SELECT count(*) FROM ready JOIN runs r ON r.id = ready.run_id
                    WHERE r.batch_id = %(b)s AND r.status = {sql_value(RunStatus.QUEUED)}) AS n""",
        {"b": batch_id},
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def pick_unstarted(conn: Conn, batch_id: Any, limit: int) -> list[Any]:
    """Lock up to `limit` unstarted runs (SKIP LOCKED), roughly in input order."""
    cur = await conn.execute(
        f"""SELECT id FROM runs WHERE batch_id = %s AND {UNSTARTED}
            LIMIT %s FOR UPDATE SKIP LOCKED""",
        (batch_id, limit),
    )
    return [r["id"] for r in await cur.fetchall()]


async def started_live_ids(
    conn: Conn, batch_id: Any, after_index: int, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"""SELECT id, batch_index FROM runs
            WHERE batch_id = %s AND status = ANY(%s) AND NOT ({UNSTARTED}) AND batch_index > %s
            ORDER BY batch_index LIMIT %s""",
        (batch_id, list(RUN_LIVE), after_index, limit),
    )
    return await cur.fetchall()


async def has_unstarted(conn: Conn, batch_id: Any) -> bool:
    cur = await conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM runs WHERE batch_id = %s AND {UNSTARTED}) AS x",
        (batch_id,),
    )
    row = await cur.fetchone()
    return bool(row and row["x"])


async def try_loader_gone(conn: Conn, lock_class: int, batch_id: Any) -> bool:
    """True if nobody holds the loader's advisory lock of this batch (taken for this transaction)."""
    cur = await conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS free", (lock_class, str(batch_id))
    )
    row = await cur.fetchone()
    return bool(row and row["free"])


async def loaded_count(conn: Conn, batch_id: Any) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM runs WHERE batch_id = %s", (batch_id,))
    row = await cur.fetchone()
    return int(row["n"]) if row else 0
