"""Recovery and timers: everything the orchestrator re-derives from PostgreSQL alone, in a loop.

Each function finds candidates with a cheap indexed query, then moves each one in its own checkpoint
transaction (run row locked, guarded UPDATE; the loop is `candidates.for_each_run`), so several
orchestrators can run them at once without double work: the loser's guard matches no row
(`LostRace`) and it moves on.
- `fire_due_timers`: retry backoffs that are due -> ready; delay waits that are due -> succeeded;
  signal waits that timed out -> `control.fire_signal_timeout`.
- `reap_expired_leases`: running steps whose worker stopped heartbeating -> ready again (or failed after
  too many lost leases, so a step that kills its worker cannot loop forever).
- `redispatch_stale`: ready steps whose message was lost (broker purge) get a fresh outbox row.
- `settle_stuck_runs`: live runs with no live work are advanced (finishes runs a crash left behind).
- `seconds_to_next_timer`: how long the orchestrator's timer loop may sleep: until the next step
  timer or the end of the next parked step's Retry-After (`provider_parked.not_before`).
All compare times with the database clock (`now()`).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.advance import advance_run, fail_run
from flowstudio.engine.candidates import for_each_run
from flowstudio.engine.control import fire_signal_timeout
from flowstudio.engine.fanout import settle_item
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.runtxn import LostRace, OutboxMessage, RunTxn
from flowstudio.store.statuses import (
    RUN_LIVE_SQL,
    STEP_ACTIVE_SQL,
    STEP_DUE_SQL,
    RunStatus,
    StepStatus,
    sql_value,
)

log = logging.getLogger(__name__)
BATCH = 200


async def seconds_to_next_timer(conn: psycopg.AsyncConnection[Any]) -> float | None:
    """Seconds until the next timer is due (negative: overdue), None with no timer ahead: a step's
    due time (retry backoff, delay, signal timeout), or the end of a parked step's wait (a 429's
    Retry-After; a step parked for a 429 at the end of a batch was woken up to a poll late). Parked
    steps already due but not woken yet (their provider has its limit's worth woken) are left to
    the poll: counting them would spin the loop."""
    cur = await conn.execute(f"""SELECT extract(epoch FROM least(
              (SELECT min(due_at) FROM steps WHERE status IN {STEP_DUE_SQL} AND due_at IS NOT NULL),
              (SELECT min(not_before) FROM provider_parked
                WHERE woken_at IS NULL AND not_before > now())) - now()) AS wait""")
    row = await cur.fetchone()
    return None if row is None or row["wait"] is None else float(row["wait"])


async def fire_due_timers(conn: psycopg.AsyncConnection[Any]) -> list[OutboxMessage]:
    cur = await conn.execute(
        f"""SELECT id, run_id, status, node_id, node_type, item_index FROM steps
            WHERE status IN {STEP_DUE_SQL} AND due_at <= now()
            ORDER BY due_at LIMIT %s""",
        (BATCH,),
    )
    return await for_each_run(conn, await cur.fetchall(), _fire_timer, skip_terminal=True)


# step status -> (trigger, SET, timer) when its due timer fires (a signal wait's is its timeout)
TIMER_MOVES = {
    StepStatus.RETRYING.value: (
        "fire_retry",
        "due_at = NULL, ready_at = now(), dispatched_at = now()",
        "retry",
    ),
    StepStatus.WAITING.value: ("finish_wait", "due_at = NULL, finished_at = now()", "delay"),
}


async def _fire_timer(txn: RunTxn, row: dict[str, Any]) -> None:
    """A due retry -> ready; a due delay -> succeeded (then advance); a signal wait -> its timeout."""
    if row["status"] != StepStatus.RETRYING.value and row["node_type"] == "wait_for_signal":
        graph = await load_graph(txn.conn, txn.run["flow_id"], txn.run["flow_version"])
        if not await fire_signal_timeout(txn, graph, row):
            raise LostRace("timer already fired")
        return
    trigger, set_sql, timer = TIMER_MOVES[row["status"]]
    moved = await txn.move_steps(
        trigger,
        "s.id = %(step)s AND s.due_at <= now()",
        {"step": row["id"]},
        set_sql=set_sql,
        data={"timer": timer},
    )
    if not moved:
        raise LostRace("timer already fired")
    if trigger == "finish_wait":
        graph = await load_graph(txn.conn, txn.run["flow_id"], txn.run["flow_version"])
        if row["item_index"] > 0:
            await settle_item(txn, graph, row["node_id"], row["item_index"])
        else:
            await advance_run(txn, graph)


EXPIRE_DEAD_WORKERS = f"""
UPDATE steps s SET lease_expires_at = now() - interval '1 millisecond'
WHERE s.status = {sql_value(StepStatus.RUNNING)} AND s.lease_expires_at >= now()
  AND s.lease_owner IN (
      SELECT p.id FROM processes p
      WHERE p.kind = 'worker' AND p.info ? 'liveness'
        AND NOT EXISTS (
            SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended(p.id, 0)))
RETURNING s.id
"""


async def expire_leases_of_dead_workers(conn: psycopg.AsyncConnection[Any]) -> int:
    """End now the leases held by workers whose liveness lock is gone (worker/liveness.py): the
    process is dead, so `reap_expired_leases` can make its steps ready at once."""
    cur = await conn.execute(EXPIRE_DEAD_WORKERS)
    expired = len(await cur.fetchall())
    if expired:
        log.info("ended %d leases of dead workers (liveness lock gone)", expired)
    return expired


async def reap_expired_leases(
    conn: psycopg.AsyncConnection[Any], lease_recoveries: int
) -> list[OutboxMessage]:
    cur = await conn.execute(
        f"""SELECT id, run_id, node_id, attempt, max_attempts FROM steps
            WHERE status = {sql_value(StepStatus.RUNNING)} AND lease_expires_at < now()
            ORDER BY lease_expires_at LIMIT %s""",
        (BATCH,),
    )

    async def reap(txn: RunTxn, row: dict[str, Any]) -> None:
        await _reap_lease(txn, row, lease_recoveries)

    return await for_each_run(conn, await cur.fetchall(), reap)


async def _reap_lease(txn: RunTxn, row: dict[str, Any], lease_recoveries: int) -> None:
    """The step -> ready again, or -> failed (and its run) once its leases ran out too often."""
    where = "s.id = %(step)s AND s.attempt = %(attempt)s AND s.lease_expires_at < now()"
    params = {"step": row["id"], "attempt": row["attempt"]}
    if row["attempt"] >= row["max_attempts"] + lease_recoveries:
        err = {
            "message": f"worker lost {row['attempt']} times (lease expired)",
            "attempt": row["attempt"],
        }
        moved = await txn.move_steps(
            "fail",
            where,
            {**params, "err": Jsonb(err)},
            set_sql="error = %(err)s, finished_at = now(), "
            "lease_owner = NULL, lease_expires_at = NULL",
            data=err,
        )
        if moved:
            await fail_run(txn, {"node_id": row["node_id"], **err})
    else:
        moved = await txn.move_steps(
            "release",
            where,
            params,
            set_sql="lease_owner = NULL, lease_expires_at = NULL, dispatched_at = now()",
            data={"reason": "lease expired"},
        )
    if not moved:
        raise LostRace("lease already renewed or reaped")
    log.warning(
        "reaped expired lease of step %s (run %s, attempt %s)",
        row["id"],
        row["run_id"],
        row["attempt"],
    )


async def redispatch_stale(
    conn: psycopg.AsyncConnection[Any], older_than: float
) -> list[OutboxMessage]:
    cur = await conn.execute(
        f"""WITH s AS (
               UPDATE steps SET dispatched_at = now()
               WHERE id IN (SELECT id FROM steps WHERE status = {sql_value(StepStatus.READY)}
                            AND (dispatched_at IS NULL
                                 OR dispatched_at < now() - make_interval(secs => %s))
                            LIMIT %s FOR UPDATE SKIP LOCKED)
               RETURNING run_id, id, attempt)
           INSERT INTO outbox (run_id, step_id, token) SELECT run_id, id, attempt FROM s
           RETURNING id, run_id, step_id, token""",
        (older_than, BATCH),
    )
    return [
        OutboxMessage(r["id"], str(r["run_id"]), r["step_id"], r["token"])
        for r in await cur.fetchall()
    ]


async def settle_stuck_runs(conn: psycopg.AsyncConnection[Any]) -> list[OutboxMessage]:
    cur = await conn.execute(
        f"""SELECT r.id FROM runs r
            WHERE r.status IN {RUN_LIVE_SQL}
              AND r.updated_at < now() - interval '5 seconds'
              -- unstarted batch runs wait for the batch dispatcher (engine/batches.py)
              AND NOT (r.batch_id IS NOT NULL AND r.status = {sql_value(RunStatus.QUEUED)}
                       AND r.event_seq = 1)
              AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id
                              AND s.status IN {STEP_ACTIVE_SQL})
            LIMIT %s""",
        (BATCH,),
    )
    return await for_each_run(conn, await cur.fetchall(), _advance, run_key="id")


async def _advance(txn: RunTxn, row: dict[str, Any]) -> None:
    graph = await load_graph(txn.conn, txn.run["flow_id"], txn.run["flow_version"])
    await advance_run(txn, graph)
