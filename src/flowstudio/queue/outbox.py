"""Outbox publishing: the fast path after a commit, and the relay that catches whatever it missed.

`OutboxPublisher.publish_committed(msgs)` is called right after a checkpoint commits (API, worker,
orchestrator): it publishes with confirms and remembers the outbox ids, which `flush_loop()` deletes in
batches. If publishing fails (broker down), the rows simply stay. `relay_once()` (orchestrator loop)
locks outbox rows older than a grace period with SKIP LOCKED, publishes them, and deletes them in the
same transaction; a crash anywhere leaves the rows for the next pass. Duplicates are harmless: a message
whose fencing token no longer matches finds nothing to claim.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio

from flowstudio.crashpoints import crashpoint
from flowstudio.queue.factory import Broker
from flowstudio.queue.message import OutboxRow, StepPointer
from flowstudio.store.db import Pool

log = logging.getLogger(__name__)


class OutboxPublisher:
    def __init__(self, broker: Broker, pool: Pool) -> None:
        self.broker = broker
        self.pool = pool
        self._published: list[int] = []

    async def publish_committed(self, messages: Sequence[StepPointer]) -> bool:
        if not messages:
            return True
        try:
            await self.broker.publish(messages)
        except Exception as exc:  # broker down or connection cut: the relay will publish later
            log.warning(
                "publish of %d committed messages failed (%s); relay will retry", len(messages), exc
            )
            return False
        self._published.extend(m.id for m in messages)
        return True

    async def flush_published(self) -> None:
        if not self._published:
            return
        ids, self._published = self._published, []
        try:
            async with self.pool.connection() as conn:
                await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
        except Exception as exc:  # rows stay; the relay republishes them, duplicates are harmless
            log.warning("could not delete %d published outbox rows: %s", len(ids), exc)

    async def flush_loop(self, interval: float = 0.2) -> None:
        while True:
            await anyio.sleep(interval)
            await self.flush_published()


async def relay_once(pool: Pool, broker: Broker, *, grace: float = 2.0, limit: int = 500) -> int:
    """Publish outbox rows older than `grace` seconds that nobody deleted; returns how many."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """SELECT id, run_id, step_id, token FROM outbox
               WHERE created_at < now() - make_interval(secs => %s)
               ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
            (grace, limit),
        )
        rows: list[dict[str, Any]] = await cur.fetchall()
        if not rows:
            return 0
        await broker.publish(
            [OutboxRow(r["id"], str(r["run_id"]), r["step_id"], r["token"]) for r in rows]
        )
        crashpoint("outbox.relay_published")
        await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],))
    log.info("relayed %d outbox messages", len(rows))
    return len(rows)
