"""Forming groups of a worker's checkpoint writes that are ready together (group commit, group claim).

A step slot calls `await grouper.submit(item)`. With nothing in flight (and no window) the slot
does its write at once, alone (`alone(item)`: the sequential path pays nothing). Otherwise the
item joins a queue and the slot waits. `run()` (a task of the worker) takes what is queued, waits
the window first if one is set (0: no wait; what queues while a write is in flight forms the next
group), and writes up to `max_items` of them, one per key (run), with `together(items)`; the rest
wait for the next group. A group of one takes the `alone` path. Each slot then gets its own
result: a value, an exception (its `LostRace`), or None (write it alone). If the group's
transaction failed as a whole (`GroupFailed`: a deadlock, a lost connection), each slot writes
alone, as without grouping. At most `inflight` writes (groups, or a slot's own) are in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio

from flowstudio.engine.groupcommit import GroupFailed
from flowstudio.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Request(Generic[T, R]):
    item: T
    done: anyio.Event = field(default_factory=anyio.Event)
    result: R | BaseException | None = None  # None: write it alone (the group failed, or said so)


@dataclass(frozen=True)
class Counters:
    """The names of a grouper's counters in the worker's stats (its heartbeat info)."""

    groups: str
    grouped: str
    fallbacks: str


class Grouper(Generic[T, R]):
    """See the module comment. `R` is never None (None means: write it alone)."""

    def __init__(
        self,
        *,
        what: str,
        settings: Settings,
        stats: dict[str, Any],
        counters: Counters,
        key: Callable[[T], str],
        alone: Callable[[T], Awaitable[R]],
        together: Callable[[list[T]], Awaitable[Sequence[R | BaseException | None]]],
    ) -> None:
        self.what = what  # "commit", "claim": for the log
        # GROUP_COMMIT_MAX_STEPS, GROUP_COMMIT_WINDOW_MS, GROUP_COMMIT_INFLIGHT: both groupers
        self.max_items = max(1, settings.group_commit_max_steps)
        self.window = max(0.0, settings.group_commit_window_ms) / 1000
        self.inflight = max(1, settings.group_commit_inflight)
        self.key, self.alone, self.together = key, alone, together
        self.queue: list[_Request[T, R]] = []
        self.active = 0  # writes in flight: groups, and a slot's own when nothing else was
        self.wake = anyio.Event()
        self.stats, self.counters = stats, counters
        stats.update({counters.groups: 0, counters.grouped: 0, counters.fallbacks: 0})

    async def submit(self, item: T) -> R:
        """`alone(item)`'s result, written with whatever else is ready meanwhile."""
        if not (self.active or self.queue or self.window):  # idle: write now, in this slot
            self.active += 1
            try:
                return await self.alone(item)
            finally:
                self._finished()
        request: _Request[T, R] = _Request(item)
        self.queue.append(request)
        self.wake.set()
        await request.done.wait()
        result = request.result
        if result is None:
            return await self.alone(item)
        if isinstance(result, BaseException):
            raise result
        return result

    def _finished(self) -> None:
        self.active -= 1
        if self.queue:
            self.wake.set()

    async def run(self) -> None:
        """Form groups for ever; up to `inflight` writes (groups or a slot's own) at once."""
        async with anyio.create_task_group() as tg:
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                if self.window:
                    await anyio.sleep(self.window)
                while self.queue and self.active < self.inflight:
                    self.active += 1
                    tg.start_soon(self._write_group, self._take())

    def _take(self) -> list[_Request[T, R]]:
        """Up to `max_items` queued requests, one per key (another of the same key waits)."""
        group: list[_Request[T, R]] = []
        rest: list[_Request[T, R]] = []
        keys: set[str] = set()
        for request in self.queue:
            key = self.key(request.item)
            if len(group) < self.max_items and key not in keys:
                group.append(request)
                keys.add(key)
            else:
                rest.append(request)
        self.queue = rest
        return group

    async def _write_group(self, group: list[_Request[T, R]]) -> None:
        try:
            if len(group) == 1:  # nothing to group with: the ordinary single path
                (only,) = group
                try:
                    only.result = await self.alone(only.item)
                except Exception as exc:  # LostRace, or a database error retry_db retries
                    only.result = exc
                return
            try:
                results = await self.together([r.item for r in group])
            except GroupFailed as exc:
                log.warning("group %s failed, each of its %d alone: %s", self.what, len(group), exc)
                self.stats[self.counters.fallbacks] += 1
                return
            except Exception as exc:  # each slot decides (retry_db retries a transient error)
                for request in group:
                    request.result = exc
                return
            self.stats[self.counters.groups] += 1
            self.stats[self.counters.grouped] += len(group)
            for request, result in zip(group, results, strict=True):
                request.result = result
        finally:
            self._finished()
            for request in group:
                request.done.set()
