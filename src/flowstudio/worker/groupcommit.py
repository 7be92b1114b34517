"""A worker's group committer: step successes that are ready together commit in one transaction.

With GROUP_COMMIT on, a step slot whose node succeeded calls `committer.commit_success(...)` instead
of `checkpoint.commit_success`: a `worker/grouping.py` Grouper forms the groups (the slot commits at
once alone when nothing else is in flight; what queues meanwhile forms the next group, after
GROUP_COMMIT_WINDOW_MS if set), up to GROUP_COMMIT_MAX_STEPS steps, one per run, committed with
`engine.groupcommit.commit_successes` on one pooled connection; at most GROUP_COMMIT_INFLIGHT
commits in flight. Each slot gets its own outbox and eagerly claimed next step, or its `LostRace`;
a chain member whose one call wrote nothing (`general`) takes the general path right after the
group, on its connection (not the one call again), and every member of a group that failed as a
whole (`GroupFailed`) commits alone. A map item's success (its map's bookkeeping) is never grouped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowstudio.engine import checkpoint
from flowstudio.engine.checkpoint import ClaimedStep, EagerClaim, NextStep
from flowstudio.engine.groupcommit import Committed, Success, commit_successes
from flowstudio.engine.runtxn import LostRace, OutboxMessage
from flowstudio.settings import Settings
from flowstudio.store.db import Pool
from flowstudio.worker.grouping import Counters, Grouper

Written = tuple[list[OutboxMessage], NextStep | None]


class GroupCommitter:
    def __init__(self, settings: Settings, pool: Pool, stats: dict[str, Any]) -> None:
        self.pool = pool
        self.one_call = settings.one_call_commit
        self.grouper: Grouper[Success, Written] = Grouper(
            what="commit",
            settings=settings,
            stats=stats,  # the worker's counters (its heartbeat info)
            counters=Counters("groups", "grouped_steps", "group_fallbacks"),
            key=lambda m: m.step.run_id,
            alone=self._solo,
            together=self.commit_group,
        )

    async def commit_success(
        self,
        step: ClaimedStep,
        worker_id: str,
        *,
        input_: Any,
        output: Any,
        branch: str | None = None,
        eager: EagerClaim | None = None,
    ) -> Written:
        """As `checkpoint.commit_success`, committed with whatever else is ready meanwhile."""
        success = Success(step, worker_id, input_, output, branch, None, eager)
        if step.item_index > 0:  # a map item: the map's own bookkeeping, never grouped
            return await self._solo(success)
        return await self.grouper.submit(success)

    async def run(self) -> None:
        await self.grouper.run()

    async def _solo(self, m: Success) -> Written:
        async with self.pool.connection() as conn:
            return await _commit_alone(conn, m, one_call=self.one_call)

    async def commit_group(self, group: list[Success]) -> Sequence[Written | BaseException | None]:
        """The Grouper's write of a group: each member's result, or None (commit it alone)."""
        async with self.pool.connection() as conn:
            results = await commit_successes(conn, group, one_call=self.one_call)
            written: list[Written | BaseException | None] = []
            for member, r in zip(group, results, strict=True):
                if r is None:  # its one call wrote nothing (`general`): the general path, at
                    # once, on this connection (asking the one call again would answer the same)
                    written.append(await _general(conn, member))
                else:
                    written.append((r.outbox, r.next) if isinstance(r, Committed) else r)
        return written


async def _commit_alone(conn: Any, m: Success, *, one_call: bool) -> Written:
    return await checkpoint.commit_success(
        conn,
        m.step,
        m.worker_id,
        input_=m.input_,
        output=m.output,
        branch=m.branch,
        eager=m.eager,
        one_call=one_call,
    )


async def _general(conn: Any, m: Success) -> Written | BaseException:
    """A member whose one call answered `general`: the general path (its LostRace as a result)."""
    try:
        return await _commit_alone(conn, m, one_call=False)
    except LostRace as exc:
        return exc
