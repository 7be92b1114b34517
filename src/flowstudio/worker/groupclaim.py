"""A worker's group claimer: published steps whose messages arrive together are claimed in one
transaction.

`claimer.claim(message)` is `claim.claim_step_reading_context` for this worker (the claimed step
comes with its context rows, read by the claim's last statement: no query of its own to execute
it). With
GROUP_COMMIT on, a `worker/grouping.py` Grouper forms the groups as for commits (a claim with
nothing else in flight goes at once, alone; what queues meanwhile forms the next group, up to
GROUP_COMMIT_MAX_STEPS claims, one per run, at most GROUP_COMMIT_INFLIGHT claims in flight),
claimed with `engine.groupclaim.claim_steps` on one pooled connection. A batch's first items reach a
worker as hundreds of messages at once: each was a transaction of its own (two messages to
PostgreSQL and a commit's WAL flush each). Each slot gets its claimed step or its `LostRace` (its
message is stale: ack it and drop it); with GROUP_COMMIT off, every claim goes alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowstudio.engine.checkpoint import NextStep
from flowstudio.engine.claim import claim_step_reading_context
from flowstudio.engine.groupclaim import claim_steps_reading_context
from flowstudio.queue.message import StepMessage
from flowstudio.settings import Settings
from flowstudio.store.db import Pool
from flowstudio.worker.context import context_nodes
from flowstudio.worker.grouping import Counters, Grouper


class GroupClaimer:
    def __init__(
        self, settings: Settings, pool: Pool, stats: dict[str, Any], worker_id: str
    ) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.lease_seconds = settings.lease_seconds
        self.enabled = settings.group_commit
        self.grouper: Grouper[StepMessage, NextStep] = Grouper(
            what="claim",
            settings=settings,
            stats=stats,
            counters=Counters("claim_groups", "grouped_claims", "claim_group_fallbacks"),
            key=lambda c: c.run_id,
            alone=self._solo,
            together=self._together,
        )

    async def claim(self, message: StepMessage) -> NextStep:
        """The step under this worker's lease, with its context rows; raises LostRace (a stale or
        duplicate message)."""
        if not self.enabled:
            return await self._solo(message)
        return await self.grouper.submit(message)

    async def run(self) -> None:
        await self.grouper.run()

    async def _solo(self, c: StepMessage) -> NextStep:
        async with self.pool.connection() as conn:
            return await claim_step_reading_context(
                conn,
                run_id=c.run_id,
                step_id=c.step_id,
                token=c.token,
                worker_id=self.worker_id,
                lease_seconds=self.lease_seconds,
                context_nodes=context_nodes,
            )

    async def _together(self, group: list[StepMessage]) -> Sequence[NextStep | BaseException]:
        async with self.pool.connection() as conn:
            return await claim_steps_reading_context(
                conn,
                group,
                worker_id=self.worker_id,
                lease_seconds=self.lease_seconds,
                context_nodes=context_nodes,
            )
