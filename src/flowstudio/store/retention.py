"""Retention: delete finished runs older than a cutoff, in small batches (`flowstudio prune`).

`prune_runs(conn, older_than_s)` deletes, oldest first and `batch_size` runs per transaction, runs that
are terminal (succeeded, failed, cancelled), finished before the cutoff, not pinned, whose parent run
(if any) is terminal too and whose batch (if any) is finished. Deleting a run cascades to its steps,
step payloads (`step_io`), event log and signals; child runs and schedule fires keep their rows with
the link set to NULL. Each batch locks only its victims (`FOR UPDATE SKIP LOCKED`, so a run being
read for replay or touched by anything else is skipped this pass) and commits before the next, so no
lock is held long and live runs are never touched. Batches whose runs are all gone and that finished
before the cutoff go too. `prune_loop` runs it daily in the orchestrator when PRUNE_AFTER_DAYS > 0.
`run_owner` / `set_pinned` serve the pin routes (`api/retention.py`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import psycopg

from flowstudio.store.db import Conn, Pool
from flowstudio.store.statuses import BATCH_ENDED_SQL, RUN_ENDED_SQL

log = logging.getLogger(__name__)

DELETE_BATCH = f"""
WITH victims AS (
    SELECT r.id FROM runs r
    WHERE r.status IN {RUN_ENDED_SQL} AND NOT r.pinned
      AND r.finished_at < now() - make_interval(secs => %(older)s)
      AND (r.parent_run_id IS NULL OR EXISTS (
            SELECT 1 FROM runs p WHERE p.id = r.parent_run_id
              AND p.status IN {RUN_ENDED_SQL}))
      AND (r.batch_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM batches b WHERE b.id = r.batch_id
              AND b.status NOT IN {BATCH_ENDED_SQL}))
    ORDER BY r.finished_at
    LIMIT %(limit)s
    FOR UPDATE OF r SKIP LOCKED
), gone_outbox AS (
    DELETE FROM outbox WHERE run_id IN (SELECT id FROM victims)
)
DELETE FROM runs WHERE id IN (SELECT id FROM victims)
"""
DELETE_BATCHES = f"""
DELETE FROM batches b
WHERE b.status IN {BATCH_ENDED_SQL}
  AND b.finished_at < now() - make_interval(secs => %(older)s)
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.batch_id = b.id)
"""
# The owner of a run (the pin routes check who may pin it).
RUN_OWNER = "SELECT owner_id FROM runs WHERE id = %s"
# Pins or unpins a run against pruning.
SET_PINNED = "UPDATE runs SET pinned = %s WHERE id = %s"
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNIT_S = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' or a bare number of days -> seconds (ValueError if bad)."""
    m = DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    seconds = float(m.group(1)) * UNIT_S[m.group(2)]
    if seconds <= 0:
        raise ValueError("the age must be positive")
    return seconds


async def prune_runs(
    conn: Conn, older_than_s: float, *, batch_size: int = 500, pause_s: float = 0.05
) -> dict[str, int]:
    """Delete prunable runs in batches of `batch_size`; returns counts. `conn` is autocommit."""
    runs = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(DELETE_BATCH, {"older": older_than_s, "limit": batch_size})
            deleted = cur.rowcount
        runs += max(deleted, 0)
        if deleted < batch_size:
            break
        await anyio.sleep(pause_s)  # let other work at the rows and the WAL between batches
    async with conn.transaction():
        cur = await conn.execute(DELETE_BATCHES, {"older": older_than_s})
        batches = max(cur.rowcount, 0)
    log.info("pruned %d runs and %d batches older than %.0fs", runs, batches, older_than_s)
    return {"runs": runs, "batches": batches}


async def run_owner(conn: Conn, run_id: Any) -> Any | None:
    """The run's owner id, or None when there is no such run."""
    cur = await conn.execute(RUN_OWNER, (run_id,))
    row = await cur.fetchone()
    return row["owner_id"] if row else None


async def set_pinned(conn: Conn, run_id: Any, pinned: bool) -> None:
    """Keep the run forever (pinned) or let retention prune it again."""
    await conn.execute(SET_PINNED, (pinned, run_id))


async def prune_loop(pool: Pool, after_days: float, every_s: float = 86400) -> None:
    """The orchestrator's daily prune (any number of orchestrators: SKIP LOCKED shares the work)."""
    while True:
        try:
            async with pool.connection() as conn:
                await prune_runs(conn, after_days * 86400)
        except psycopg.Error as exc:  # next pass retries; nothing half-done stays locked
            log.warning("prune pass failed: %s", exc)
        await anyio.sleep(every_s)
