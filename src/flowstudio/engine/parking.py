"""Parking a step durably until its provider has capacity, and waking it.

`commit_park(conn, step, worker_id, park)` is the worker's commit of a `Park` outcome: ONE checkpoint
transaction moves the step running -> waiting (`wait`, fenced by attempt + lease owner, lease
cleared, no due time: it is not a delay timer) and records the `provider_parked` row (its
`not_before` is the 429's Retry-After, or now). The run keeps its status; nothing else moves.
`wake_parked(conn)` is the orchestrator's timer pass: `provider_wake_candidates` picks, per
provider, as many due parked steps as it has free concurrency and requests this minute; each moves
waiting -> ready (`wake`) in its own run transaction with an outbox row, and `max_attempts + 1`: the
claim that follows counts an attempt, the park gave it back, so parking never uses up retries.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from flowstudio.engine.checkpoint import CLEAR_LEASE, FENCE, ClaimedStep, fence_params, lease_lost
from flowstudio.engine.runtxn import LostRace, OutboxMessage, run_transaction
from flowstudio.providers.permits import Park
from flowstudio.store import providers as store

log = logging.getLogger(__name__)
WAKE_BATCH = 500


# Same shape as checkpoint.release_step on purpose: a fenced move off `running` (here to `waiting`,
# plus the park row); release_step stays as it is on the hot path.
async def commit_park(
    conn: psycopg.AsyncConnection[Any], step: ClaimedStep, worker_id: str, park: Park
) -> list[OutboxMessage]:
    async with run_transaction(conn, step.run_id, defer_lock=True) as txn:
        moved = await txn.move_steps(
            "wait",
            FENCE,
            fence_params(step, worker_id),
            set_sql=f"due_at = NULL, {CLEAR_LEASE}",
            data={"parked": park.reason, "provider_id": park.provider_id, "seconds": park.seconds},
        )
        if not moved:
            raise lease_lost(step)
        await store.park_row(
            conn, step.step_id, step.run_id, park.provider_id, park.seconds, park.reason
        )
    return txn.outbox


async def wake_parked(conn: psycopg.AsyncConnection[Any]) -> list[OutboxMessage]:
    out: list[OutboxMessage] = []
    for row in await store.wake_candidates(conn, WAKE_BATCH):
        try:
            async with run_transaction(conn, row["run_id"]) as txn:
                moved = []
                if not txn.terminal:
                    moved = await txn.move_steps(
                        "wake",
                        "s.id = %(step)s",
                        {"step": row["step_id"]},
                        set_sql="max_attempts = s.max_attempts + 1, due_at = NULL, "
                        "ready_at = now(), dispatched_at = now()",
                        data={"woken": "provider capacity"},
                    )
                if not moved:
                    raise LostRace("parked step no longer waiting")
                await store.mark_woken(conn, row["step_id"])
            out += txn.outbox
        except LostRace:
            await store.forget_parked(conn, row["step_id"])
    return out
