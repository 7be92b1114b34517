"""The orchestrator process: timers, recovery and the outbox relay, all derived from PostgreSQL.

`Orchestrator.run()` runs its loops in one anyio task group (a crash in any takes the process down
loudly; a database outage only delays them, see `_guarded`):
- `timer_loop`: fires due retry backoffs and delay timers (`recovery.fire_due_timers`), wakes steps
  parked for a provider that has capacity again (`engine.parking.wake_parked`), sleeping until
  the next due time or parked step's Retry-After end (`recovery.seconds_to_next_timer`; at most
  `TIMER_POLL` seconds, so timers added by other processes are seen).
- `recovery_loop`: every RECOVERY_INTERVAL seconds ends the leases of dead workers (their liveness
  lock is gone: worker/liveness.py), reaps expired leases, re-dispatches ready steps whose
  message was lost, settles runs with no live work, relays outbox rows the fast path missed, and
  purges stale provider permits, usage buckets and parked rows (`store.providers.purge`).
- `batches.batch_loop`: starts queued runs of batches, at most BATCH_CONCURRENCY live per batch.
- `schedule_loop`: fires due cron ticks exactly once (`schedules.fire_due_schedules`).
- `retention.prune_loop` (when PRUNE_AFTER_DAYS > 0): daily deletion of old finished, unpinned runs.
- `rollup_loop`: advances the metrics rollups every few seconds (`store.metrics_rollup`), and the
  metrics counters flusher (lease expiries, re-dispatches, settled runs; `observability.counters`).
- the process heartbeat. Any number of orchestrators may run: every move is guarded and row-locked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from flowstudio import runtime
from flowstudio.crashpoints import crashpoint
from flowstudio.engine import batches, children, parking, recovery, schedules
from flowstudio.engine.runtxn import OutboxMessage
from flowstudio.nodes import registry
from flowstudio.observability import counters, standalone
from flowstudio.queue.factory import make_broker
from flowstudio.queue.outbox import OutboxPublisher, relay_once
from flowstudio.settings import Settings
from flowstudio.store import metrics_rollup, retention
from flowstudio.store import providers as provider_store
from flowstudio.store.db import TRANSIENT, open_pool, retry_db

log = logging.getLogger(__name__)
TIMER_POLL = 0.25
SCHEDULE_POLL = 1.0
ROLLUP_INTERVAL = 5.0


class Orchestrator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = runtime.new_process_id("orchestrator")
        self.stats: dict[str, int] = {
            "timers": 0,
            "reaped": 0,
            "redispatched": 0,
            "settled": 0,
            "relayed": 0,
            "orphans_cancelled": 0,
            "fast_takeovers": 0,
        }

    async def run(self) -> None:
        registry.load_all()
        self.pool = await open_pool(self.settings, max_size=4, name=self.id, generic_plans=True)
        self.broker = make_broker(self.settings)
        self.publisher = OutboxPublisher(self.broker, self.pool)
        stop = anyio.Event()
        try:
            await retry_db(
                lambda: runtime.register_process(self.pool, self.id, "orchestrator", {}),
                what="register orchestrator",
            )
            runtime.tune_gc(self.settings.gc_gen0_threshold)  # what start-up made is never garbage
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.timer_loop)
                tg.start_soon(self.recovery_loop)
                tg.start_soon(self.schedule_loop)
                tg.start_soon(self.publisher.flush_loop)
                tg.start_soon(batches.batch_loop, self.pool, self.publisher, self.settings)
                if self.settings.prune_after_days > 0:
                    tg.start_soon(retention.prune_loop, self.pool, self.settings.prune_after_days)
                tg.start_soon(
                    runtime.process_heartbeat_loop,
                    self.pool,
                    self.id,
                    "orchestrator",
                    self.stats,
                    2.0,
                )
                tg.start_soon(runtime.stop_on_signals, stop)
                tg.start_soon(counters.COUNTERS.flush_loop, self.pool)
                tg.start_soon(self.rollup_loop)
                if self.settings.metrics_port:
                    tg.start_soon(standalone.serve, self.settings, "orchestrator", self.pool)
                await stop.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.publisher.flush_published()
                await runtime.unregister_process(self.pool, self.id)
                await self.broker.close()
                await self.pool.close()

    async def _guarded(self, what: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run one pass; a lost database connection is logged and retried on the next pass."""
        try:
            return await fn()
        except TRANSIENT as exc:
            log.warning("%s: database unavailable (%s)", what, exc)
            await anyio.sleep(0.5)
            return None

    async def _publish(self, msgs: list[OutboxMessage] | None) -> None:
        if msgs:
            await self.publisher.publish_committed(msgs)

    async def timer_pass(self) -> float:
        async with self.pool.connection() as conn:
            fired = await recovery.fire_due_timers(conn)
            fired += await children.complete_finished_children(conn)
            fired += await parking.wake_parked(conn)
            wait = await recovery.seconds_to_next_timer(conn)
        self.stats["timers"] += len(fired)
        if fired:
            crashpoint("orchestrator.timers_committed")
        await self._publish(fired)
        return max(0.005, min(TIMER_POLL if wait is None else wait, TIMER_POLL))

    async def schedule_pass(self) -> None:
        async with self.pool.connection() as conn:
            started = await schedules.fire_due_schedules(conn)
        await self._publish(started)

    async def rollup_pass(self) -> None:
        try:
            async with self.pool.connection() as conn:
                await metrics_rollup.advance(conn)
        except TRANSIENT:
            raise
        except Exception:  # metrics must never take the orchestrator down
            log.exception("metrics rollup failed; retrying in %gs", ROLLUP_INTERVAL)

    async def rollup_loop(self) -> None:
        """Keep the metrics rollups current even when nobody scrapes (any orchestrator may)."""
        while True:
            await self._guarded("metrics rollup", self.rollup_pass)
            await anyio.sleep(ROLLUP_INTERVAL)

    async def schedule_loop(self) -> None:
        while True:
            await self._guarded("schedules", self.schedule_pass)
            await anyio.sleep(SCHEDULE_POLL)

    async def timer_loop(self) -> None:
        while True:
            wait = await self._guarded("timers", self.timer_pass)
            await anyio.sleep(TIMER_POLL if wait is None else wait)

    async def recovery_pass(self) -> None:
        async with self.pool.connection() as conn:
            self.stats["fast_takeovers"] += await recovery.expire_leases_of_dead_workers(conn)
            reaped = await recovery.reap_expired_leases(conn, self.settings.lease_recoveries)
            redispatched = await recovery.redispatch_stale(conn, self.settings.redispatch_after)
            settled = await recovery.settle_stuck_runs(conn)
            self.stats["orphans_cancelled"] += await children.cancel_orphan_children(conn)
            await provider_store.purge(conn)
        self.stats["reaped"] += len(reaped)
        counters.COUNTERS.inc(counters.LEASE_EXPIRIES, value=len(reaped))
        self.stats["redispatched"] += len(redispatched)
        self.stats["settled"] += len(settled)
        counters.COUNTERS.inc(counters.REDISPATCHES, value=len(redispatched))
        counters.COUNTERS.inc(counters.RUNS_SETTLED, value=len(settled))
        await self._publish(reaped + redispatched + settled)
        try:
            self.stats["relayed"] += await relay_once(self.pool, self.broker)
        except TRANSIENT:
            raise
        except Exception as exc:  # broker down: rows stay in the outbox for the next pass
            log.warning("outbox relay failed: %s", exc)

    async def recovery_loop(self) -> None:
        while True:
            await self._guarded("recovery", self.recovery_pass)
            await anyio.sleep(self.settings.recovery_interval)
