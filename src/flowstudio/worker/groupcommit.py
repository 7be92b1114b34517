"""A worker's group committer: step successes that are ready together commit in one transaction.

With GROUP_COMMIT on, a step slot whose node succeeded calls `committer.commit_success(...)` instead
of `checkpoint.commit_success`. With no commit in flight (and no window) the slot commits at once
itself (the sequential path pays nothing); otherwise the request joins a queue and the slot waits.
`run()` (a task of the worker) takes what is queued, waits GROUP_COMMIT_WINDOW_MS first if set (0: no
wait; what queues while a commit is in flight forms the next group), and commits up to
GROUP_COMMIT_MAX_STEPS of them, one per run, with `engine.groupcommit.commit_successes` on one pooled connection; the rest wait for
the next group. A group of one takes the ordinary single-step path. Each slot then gets its own
result: its outbox and eagerly claimed next step, or its `LostRace`. If the group's transaction
failed as a whole (`GroupFailed`: a deadlock, a lost connection), each slot commits alone, as
without group commit. At most GROUP_COMMIT_INFLIGHT commits (groups or a slot's own) are in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anyio

from flowstudio.engine import checkpoint
from flowstudio.engine.checkpoint import ClaimedStep, EagerClaim, NextStep
from flowstudio.engine.groupcommit import Committed, GroupFailed, Success, commit_successes
from flowstudio.engine.runtxn import OutboxMessage
from flowstudio.settings import Settings
from flowstudio.store.db import Pool

log = logging.getLogger(__name__)


@dataclass
class _Request:
    success: Success
    done: anyio.Event = field(default_factory=anyio.Event)
    # None: commit alone (the group failed, or the member's one call wrote nothing)
    result: Committed | BaseException | None = None


class GroupCommitter:
    def __init__(self, settings: Settings, pool: Pool, stats: dict[str, Any]) -> None:
        self.pool = pool
        self.max_steps = max(1, settings.group_commit_max_steps)
        self.window = max(0.0, settings.group_commit_window_ms) / 1000
        self.inflight = max(1, settings.group_commit_inflight)
        self.one_call = settings.one_call_commit
        self.queue: list[_Request] = []
        self.active = 0  # commits in flight: groups, and a slot's own when nothing else was
        self.wake = anyio.Event()
        self.stats = stats  # the worker's counters (its heartbeat info): groups, grouped_steps
        self.stats.update(groups=0, grouped_steps=0, group_fallbacks=0)

    async def commit_success(
        self,
        step: ClaimedStep,
        worker_id: str,
        *,
        input_: Any,
        output: Any,
        branch: str | None = None,
        eager: EagerClaim | None = None,
    ) -> tuple[list[OutboxMessage], NextStep | None]:
        """As `checkpoint.commit_success`, committed with whatever else is ready meanwhile."""
        if step.item_index > 0:  # a map item: the map's own bookkeeping, never grouped
            return await self._solo(step, worker_id, input_, output, branch, eager)
        if not (self.active or self.queue or self.window):  # idle: commit now, in this slot
            self.active += 1
            try:
                return await self._solo(step, worker_id, input_, output, branch, eager)
            finally:
                self._finished()
        request = _Request(Success(step, worker_id, input_, output, branch, None, eager))
        self.queue.append(request)
        self.wake.set()
        await request.done.wait()
        match request.result:
            case Committed(outbox=outbox, next=nxt):
                return outbox, nxt
            case BaseException() as exc:
                raise exc
        return await self._solo(step, worker_id, input_, output, branch, eager)

    async def _solo(
        self,
        step: ClaimedStep,
        worker_id: str,
        input_: Any,
        output: Any,
        branch: str | None,
        eager: EagerClaim | None,
    ) -> tuple[list[OutboxMessage], NextStep | None]:
        async with self.pool.connection() as conn:
            return await checkpoint.commit_success(
                conn,
                step,
                worker_id,
                input_=input_,
                output=output,
                branch=branch,
                eager=eager,
                one_call=self.one_call,
            )

    def _finished(self) -> None:
        self.active -= 1
        if self.queue:
            self.wake.set()

    async def run(self) -> None:
        """Form groups for ever; up to `inflight` commits (groups or a slot's own) at once."""
        async with anyio.create_task_group() as tg:
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                if self.window:
                    await anyio.sleep(self.window)
                while self.queue and self.active < self.inflight:
                    self.active += 1
                    tg.start_soon(self._commit_group, self._take())

    def _take(self) -> list[_Request]:
        """Up to `max_steps` queued requests, one per run (another of the same run waits)."""
        group: list[_Request] = []
        rest: list[_Request] = []
        runs: set[str] = set()
        for request in self.queue:
            run = request.success.step.run_id
            if len(group) < self.max_steps and run not in runs:
                group.append(request)
                runs.add(run)
            else:
                rest.append(request)
        self.queue = rest
        return group

    async def _commit_group(self, group: list[_Request]) -> None:
        try:
            if len(group) == 1:  # nothing to group with: the ordinary single-step path
                (only,) = group
                m = only.success
                try:
                    outbox, nxt = await self._solo(
                        m.step, m.worker_id, m.input_, m.output, m.branch, m.eager
                    )
                except Exception as exc:  # LostRace, or a database error retry_db retries
                    only.result = exc
                else:
                    only.result = Committed(outbox, nxt)
                return
            try:
                async with self.pool.connection() as conn:
                    results = await commit_successes(
                        conn, [r.success for r in group], one_call=self.one_call
                    )
            except GroupFailed as exc:
                log.warning(
                    "group commit failed, committing its %d steps alone: %s", len(group), exc
                )
                self.stats["group_fallbacks"] += 1
                return
            except Exception as exc:  # each slot decides (retry_db retries a transient error)
                for request in group:
                    request.result = exc
                return
            self.stats["groups"] += 1
            self.stats["grouped_steps"] += len(group)
            for request, result in zip(group, results, strict=True):
                request.result = result
        finally:
            self._finished()
            for request in group:
                request.done.set()
