"""Batches of runs: loading (bulk insert), the dispatcher that starts a few at a time, cancel, repair.

- `load_batch(conn, ...)` (API): takes a session advisory lock naming the batch *before* the batch row
  exists, inserts the batch (`loading`), then the validated items in chunks, one transaction each
  (`bulk.insert_batch_runs`): LOAD_FIRST_CHUNK runs, then LOAD_CHUNK at a time, each chunk but the
  last NOTIFYing the dispatchers as it commits: the runs loaded start while the rest load (a 100k
  batch's first items started only once all of it was in). Then the batch moves to `running`. A
  cancel while loading stops it at the next chunk. If loading fails, the batch is marked `failed`
  and its loaded runs are cancelled, started or not; if the API process dies, the lock vanishes
  with its connection and `sweep_pass` does it.
- `batch_loop(pool, publisher, settings)` (orchestrator, one more loop of `Orchestrator.run`): every
  DISPATCH_POLL seconds (IDLE_POLL with no live batch; a batch that loaded a chunk or finished
  loading wakes it at once: its NOTIFY on BATCH_CHANNEL, `locks.wake_on_notify`; so does each
  started run that ends once its batch has no unstarted run left, migration 0026's trigger, so a
  batch is finished as its last run ends; passes are at least MIN_PASS_GAP apart)
  `dispatch_batch()` each live batch (running, or still loading): under the batch row lock (SKIP
  LOCKED, so several orchestrators share the work) it counts the batch's started live runs, picks that many fewer than BATCH_CONCURRENCY unstarted runs (FOR UPDATE
  SKIP LOCKED; DISPATCH_CHUNK per transaction, each chunk published as soon as it commits) and
  starts them in one statement (`bulk.start_unstarted_runs`: roots ready, events, outbox rows, the
  rows `advance_run` writes) or, when a flow's start plans more than its roots, each through the
  normal engine path (`run_transaction` + `advance_run`), publishing after commit; with no live
  run left it marks a loaded batch `succeeded` (failed runs are counted, not fatal).
  Every SWEEP_INTERVAL seconds `sweep_pass()` fails batches whose loader died, cancelling the runs
  they had started, and cancels unstarted runs left in cancelled/failed batches (never a started
  one: a user may resume a run of an ended batch).
- `cancel_batch(conn, batch_id, reason)` (API): batch -> cancelled, then every started live run via
  `advance.cancel_run` (its own `run_transaction`), then unstarted ones in bulk (`bulk.py`), in chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from itertools import islice
from typing import Any

import anyio
import psycopg

from flowstudio.crashpoints import crashpoint
from flowstudio.engine import bulk
from flowstudio.engine.advance import advance_run, cancel_run
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.runtxn import LostRace, OutboxMessage, run_transaction
from flowstudio.engine.states import BatchStatus, batch_move
from flowstudio.queue.outbox import OutboxPublisher
from flowstudio.settings import Settings
from flowstudio.store import batches as store
from flowstudio.store import locks
from flowstudio.store.db import TRANSIENT, Pool
from flowstudio.store.statuses import BATCH_LIVE

log = logging.getLogger(__name__)
LOAD_CHUNK = 1000  # runs per loading transaction
# the first chunk is small: its runs are dispatched while the rest load (~11 ms for 128 here, where
# a chunk of 1000 took ~86 ms)
LOAD_FIRST_CHUNK = 128
CANCEL_CHUNK = 2000  # unstarted runs per bulk-cancel statement
DISPATCH_POLL = 0.25
# the least time between two passes: a batch's tail wakes the dispatcher as each run ends (up to
# BATCH_CONCURRENCY NOTIFYs in a burst), and one pass answers for all the wake-ups it gathered
MIN_PASS_GAP = 0.02
IDLE_POLL = 1.0  # with no running batch (a newly loaded one wakes the loop at once: NOTIFY)
DISPATCH_CHUNK = 32  # runs started per transaction: the first items' messages go out at once
# NOTIFY: a batch was loaded, or a run of a batch with no unstarted run left ended (the name is
# also in migration 0026's trigger function); the dispatchers wake up
BATCH_CHANNEL = "flowstudio_batches"
SWEEP_INTERVAL = 5.0
LOADER_LOCK = 0x42617463  # advisory lock class "Batc"; the key is hashtext(batch id)
LOADING = BatchStatus.LOADING.value
# Ended batches that may still hold unstarted runs (a succeeded one has none by definition).
ENDED_WITH_LEFTOVERS = (BatchStatus.CANCELLED.value, BatchStatus.FAILED.value)


class BatchCancelled(Exception):
    """The batch was cancelled while it was loading; what was loaded is being cancelled too."""


def loader_lock(
    conn: psycopg.AsyncConnection[Any], batch_id: Any
) -> AbstractAsyncContextManager[None]:
    """Session advisory lock that says "a live process is loading this batch"."""
    return locks.session_lock(conn, LOADER_LOCK, str(batch_id))


async def load_batch(
    conn: psycopg.AsyncConnection[Any],
    *,
    batch_id: Any,
    flow_id: Any,
    version: int,
    owner_id: Any,
    total: int,
    items: Iterable[bytes],
) -> None:
    """Create the batch and insert its `total` items as unstarted runs; then it is `running`."""
    graph = await load_graph(conn, flow_id, version)
    async with loader_lock(conn, batch_id):
        batch = store.NewBatch(batch_id, flow_id, version, owner_id, total)
        await store.create_batch(conn, batch)
        loaded = 0
        try:
            it = iter(items)
            while chunk := list(islice(it, LOAD_CHUNK if loaded else LOAD_FIRST_CHUNK)):
                async with conn.transaction():
                    if await store.lock_batch_status(conn, batch_id, share=True) != LOADING:
                        raise BatchCancelled(str(batch_id))
                    await bulk.insert_batch_runs(
                        conn, batch, first_index=loaded, items=chunk, graph=graph
                    )
                    if loaded + len(chunk) < total:  # the dispatchers start these now (the last
                        await locks.notify(conn, BATCH_CHANNEL, str(batch_id))  # chunk: "loaded")
                loaded += len(chunk)
                crashpoint("api.batch_chunk_loaded")
            async with conn.transaction():  # the dispatchers hear of it as it commits
                if await store.move_batch(conn, batch_id, *batch_move("loaded")) is None:
                    raise BatchCancelled(str(batch_id))
                await locks.notify(conn, BATCH_CHANNEL, str(batch_id))
        except BatchCancelled:
            await cancel_unstarted(conn, batch_id, "batch cancelled while loading")
            raise
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await fail_loading(
                    conn,
                    batch_id,
                    f"loading stopped after {loaded} of {total} items ({type(exc).__name__})",
                )
            raise
    log.info("batch %s loaded: %d runs", batch_id, loaded)


async def fail_loading(conn: psycopg.AsyncConnection[Any], batch_id: Any, message: str) -> None:
    """Best effort: the batch -> failed and its loaded runs cancelled, those the dispatchers started
    meanwhile too (the sweep retries if this fails)."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await conn.rollback()
        if await store.move_batch(conn, batch_id, *batch_move("fail"), error={"message": message}):
            await cancel_loaded(conn, batch_id, "batch loading failed")
    except Exception as exc:  # the orchestrator's sweep repairs it once the loader lock is gone
        log.warning("could not mark batch %s failed: %s", batch_id, exc)


async def cancel_unstarted(conn: psycopg.AsyncConnection[Any], batch_id: Any, reason: str) -> int:
    """Bulk-cancel every unstarted run; returns once none is left (also those another process
    was cancelling at the same time: the last pass waits for their locks)."""
    done = 0
    while True:
        n = await bulk.cancel_unstarted_runs(conn, batch_id, reason, CANCEL_CHUNK)
        if not n:
            if not await store.has_unstarted(conn, batch_id):
                return done
            n = await bulk.cancel_unstarted_runs(
                conn, batch_id, reason, CANCEL_CHUNK, skip_locked=False
            )
        done += n


async def cancel_loaded(conn: psycopg.AsyncConnection[Any], batch_id: Any, reason: str) -> None:
    """Cancel what a failed load left live: the runs the dispatchers started while it loaded (one
    checkpoint transaction each), then the unstarted ones (in bulk)."""
    await cancel_started(conn, batch_id, reason)
    await cancel_unstarted(conn, batch_id, reason)


async def cancel_started(conn: psycopg.AsyncConnection[Any], batch_id: Any, reason: str) -> int:
    """Cancel the batch's started live runs one checkpoint transaction each, in pages."""
    done, after = 0, -1
    while rows := await store.started_live_ids(conn, batch_id, after, 500):
        for row in rows:
            try:
                async with run_transaction(conn, row["id"]) as txn:
                    if await cancel_run(txn, reason):
                        done += 1
            except LostRace:
                continue
        after = rows[-1]["batch_index"]
    return done


async def cancel_batch(
    conn: psycopg.AsyncConnection[Any], batch_id: Any, reason: str
) -> store.BatchRow | None:
    """Batch -> cancelled and every live run with it; None if the batch had already ended."""
    async with conn.transaction():
        batch = await store.move_batch(
            conn, batch_id, *batch_move("cancel"), error={"message": reason}
        )
    if batch is None:
        return None
    started = await cancel_started(conn, batch_id, reason)
    unstarted = await cancel_unstarted(conn, batch_id, reason)
    log.info("batch %s cancelled: %d started + %d unstarted runs", batch_id, started, unstarted)
    return batch


async def dispatch_batch(
    conn: psycopg.AsyncConnection[Any],
    batch_id: Any,
    concurrency: int,
    chunk: int = DISPATCH_CHUNK,
    *,
    at_once: bool = True,
    fold: bool = False,
) -> list[OutboxMessage]:
    """Start at most `chunk` unstarted runs, up to `concurrency` live ones; finish the batch when
    nothing is live. `at_once`: in one statement (`bulk.start_unstarted_runs`) when the flow's
    start is its roots alone, and with `fold` (FOLD_STEPS) past a pass-through input root
    (`bulk.start_runs_folded`); otherwise (and with False) each through `advance_run`."""
    out: list[OutboxMessage] = []
    async with conn.transaction():
        batch = await store.lock_dispatchable_batch(conn, batch_id)
        if batch is None:
            return out  # another orchestrator has it, or it is no longer live
        live = await store.started_live_count(conn, batch_id)
        picked = await store.pick_unstarted(conn, batch_id, max(0, min(chunk, concurrency - live)))
        one_by_one = picked
        if picked:
            graph = await load_graph(conn, batch.flow_id, batch.flow_version)
            if at_once and fold and (folded := bulk.folded_start(graph)):
                started, one_by_one = await bulk.start_runs_folded(conn, picked, *folded)
                out += started
            elif at_once and (nodes := bulk.start_nodes(graph)):
                started, one_by_one = await bulk.start_unstarted_runs(conn, picked, nodes)
                out += started
        for run_id in one_by_one:  # what the statement above cannot start
            async with run_transaction(conn, run_id) as txn:  # a savepoint in this transaction
                await advance_run(txn, graph)
            out += txn.outbox
        if (
            live == 0
            and not picked
            and batch.status == BatchStatus.RUNNING.value  # loaded: no run is to come
            and await store.move_batch(conn, batch_id, *batch_move("finish"), when_done=True)
        ):
            log.info("batch %s finished", batch_id)
    return out


async def dispatch_pass(
    pool: Pool, publisher: OutboxPublisher, concurrency: int, *, fold: bool = False
) -> int:
    """One round over the live batches (running or loading); returns how many runs were started
    (-1: no live batch)."""
    started = 0
    async with pool.connection() as conn:
        ids = await store.batch_ids(conn, BATCH_LIVE)
    for batch_id in ids:
        for _ in range(concurrency // DISPATCH_CHUNK + 1):  # chunk by chunk, each published
            async with pool.connection() as conn:
                msgs = await dispatch_batch(conn, batch_id, concurrency, fold=fold)
            runs = len({m.run_id for m in msgs})
            started += runs
            if msgs:
                crashpoint("orchestrator.batch_dispatched")  # committed, not yet published
                await publisher.publish_committed(msgs)
            if runs < DISPATCH_CHUNK:  # as soon as it is committed
                break
    return started if ids else -1


async def sweep_pass(pool: Pool) -> None:
    """Fail batches whose loader died (and cancel the runs they had started: an orchestrator
    that dies in between leaves those to end as they would); cancel unstarted runs left in
    cancelled/failed batches."""
    async with pool.connection() as conn:
        for batch_id in await store.batch_ids(conn, (LOADING,)):
            async with conn.transaction():
                if not await store.try_loader_gone(conn, LOADER_LOCK, batch_id):
                    continue
                loaded = await store.loaded_count(conn, batch_id)
                message = f"loading interrupted after {loaded} items (the API process stopped)"
                failed = await store.move_batch(
                    conn, batch_id, *batch_move("fail"), error={"message": message}
                )
            if failed:  # the runs it started while it loaded, once (runs of an ended batch
                log.warning("batch %s: %s", batch_id, message)  # may be resumed later)
                if n := await cancel_started(conn, batch_id, message):
                    log.info("batch %s: cancelled %d runs started while it loaded", batch_id, n)
        ended: list[tuple[Any, str]] = []
        # the newest ended batches: leftovers are what a cancel or a fail just cut short (with
        # the oldest first, 1,000 ended batches hid every newer one from the sweep for good)
        for batch_id in await store.batch_ids(conn, ENDED_WITH_LEFTOVERS, newest_first=True):
            if await store.has_unstarted(conn, batch_id):
                batch = await store.get_batch(conn, batch_id) or {}
                ended.append((batch_id, (batch.get("error") or {}).get("message", "batch ended")))
    for batch_id, reason in ended:  # a pooled connection per chunk: the other loops share the pool
        done = 0
        while True:
            async with pool.connection() as conn:
                n = await bulk.cancel_unstarted_runs(conn, batch_id, reason, CANCEL_CHUNK)
            if not n:
                break
            done += n
        if done:
            log.info("batch %s: cancelled %d leftover unstarted runs", batch_id, done)


class Nudge:
    """A wake-up that is never lost: set before `wait` begins, `wait` returns at once."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def set(self, _payload: str | None = None) -> None:
        self.event.set()

    async def wait(self, at_most: float) -> None:
        with anyio.move_on_after(at_most):
            await self.event.wait()
        self.event = anyio.Event()


async def batch_loop(pool: Pool, publisher: OutboxPublisher, settings: Settings) -> None:
    """The orchestrator's batch dispatcher; a database outage only delays it. A newly loaded batch
    wakes it at once (NOTIFY on BATCH_CHANNEL); otherwise it polls."""
    nudge = Nudge()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            locks.wake_on_notify,
            settings.database_url,
            BATCH_CHANNEL,
            nudge.set,
            "flowstudio-batch-listen",
        )
        await _dispatch_forever(pool, publisher, settings, nudge)


async def _dispatch_forever(
    pool: Pool, publisher: OutboxPublisher, settings: Settings, nudge: Nudge
) -> None:
    next_sweep = 0.0
    while True:
        started = 0
        try:
            started = await dispatch_pass(
                pool, publisher, settings.batch_concurrency, fold=settings.fold_steps
            )
            if anyio.current_time() >= next_sweep:
                await sweep_pass(pool)
                next_sweep = anyio.current_time() + SWEEP_INTERVAL
        except TRANSIENT as exc:
            log.warning("batch dispatch: database unavailable (%s)", exc)
        await anyio.sleep(MIN_PASS_GAP)
        await nudge.wait((IDLE_POLL if started < 0 else DISPATCH_POLL) - MIN_PASS_GAP)
