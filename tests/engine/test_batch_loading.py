"""A batch's runs start while it is still loading; the batch ends only once it is loaded.

The loader's pieces are called one by one, as `engine.batches.load_batch` calls them, with the
dispatcher in between: the batch row (`loading`), a chunk of runs, a dispatcher pass (it starts
the loaded runs and leaves the batch `loading`), a pass once every loaded run has ended (nothing
is finished: more runs may come), then either the load ends (`loaded`: the next pass finishes the
batch) or it fails (`fail_loading`: the started runs are cancelled with the unstarted ones, every
event log consistent; a batch already loaded is left alone). The orchestrator's sweep fails a
batch whose loader is gone and cancels the runs it had started, but never a run its user resumed
after the batch ended, and finds such a batch behind a thousand older ended ones. The loader's
first chunk is smaller than the others, and it NOTIFYs the dispatchers of every chunk but the last
(whose "loaded" does).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from flowstudio.engine import batches, bulk
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.states import batch_move
from flowstudio.store import batches as store
from tests.support.engine_env import EngineEnv
from tests.support.flows import chain
from tests.support.notifications import heard, listening

pytestmark = pytest.mark.anyio


async def loading_batch(env: EngineEnv, items: int) -> tuple[str, list[str]]:
    """A `loading` batch holding one chunk of `items` unstarted runs, as the loader leaves it
    between two chunks; returns its id and its runs in input order."""
    flow = await env.create_flow(chain())
    batch = store.NewBatch(str(uuid.uuid4()), flow, 1, env.owner_id, items * 2)
    graph = await load_graph(env.conn, flow, 1)
    await store.create_batch(env.conn, batch)
    chunk = [json.dumps({"n": i}).encode() for i in range(items)]
    await bulk.insert_batch_runs(env.conn, batch, first_index=0, items=chunk, graph=graph)
    return batch.id, await env.batch_runs(batch.id)


async def started(env: EngineEnv, runs: list[str]) -> list[str]:
    """The runs the dispatcher started (their root step left `pending`)."""
    return [r for r in runs if (await env.statuses(r))["in"] != "pending"]


async def batch_status(env: EngineEnv, batch: str) -> str:
    row: dict[str, Any] | None = await store.get_batch(env.conn, batch)
    assert row is not None, batch
    return str(row["status"])


async def run_statuses(env: EngineEnv, runs: list[str]) -> list[str]:
    return [(await env.run(r))["status"] for r in runs]


async def sweep(env: EngineEnv) -> None:
    """One pass of the orchestrator's sweep, on a pool of its own (as the orchestrator's)."""
    pool: Any = AsyncConnectionPool(
        env.url, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await pool.open()
    try:
        await batches.sweep_pass(pool)
    finally:
        await pool.close()


async def end(env: EngineEnv, runs: list[str]) -> None:
    for run_id in runs:
        await env.run_node(run_id, "in")
        await env.run_node(run_id, "out")
        assert (await env.run(run_id))["status"] == "succeeded"


async def test_a_loading_batchs_runs_start_and_it_ends_only_once_loaded(env: EngineEnv) -> None:
    batch, runs = await loading_batch(env, 3)
    assert await env.dispatch_batch(batch, concurrency=8) == "loading"
    assert await started(env, runs) == runs
    await end(env, runs)
    # nothing is live nor unstarted, but the rest of the batch is still to come
    assert await env.dispatch_batch(batch, concurrency=8) == "loading"
    assert await store.move_batch(env.conn, batch, *batch_move("loaded"))
    assert await env.dispatch_batch(batch, concurrency=8) == "succeeded"


async def test_a_failed_load_cancels_the_runs_it_started(env: EngineEnv) -> None:
    batch, runs = await loading_batch(env, 4)
    assert await env.dispatch_batch(batch, concurrency=2) == "loading"  # two of them start
    two = await started(env, runs)
    assert len(two) == 2
    await end(env, two[:1])  # one ends before the load fails: it stays succeeded
    await batches.fail_loading(env.conn, batch, "the loader failed")
    assert await batch_status(env, batch) == "failed"
    assert await run_statuses(env, runs) == [
        "succeeded" if r == two[0] else "cancelled" for r in runs
    ]
    for run_id in runs:
        env.check_log(run_id)


async def test_a_load_that_fails_after_its_batch_was_loaded_cancels_nothing(
    env: EngineEnv,
) -> None:
    batch, runs = await loading_batch(env, 2)
    assert await env.dispatch_batch(batch, concurrency=1) == "loading"
    assert await store.move_batch(env.conn, batch, *batch_move("loaded"))
    await batches.fail_loading(env.conn, batch, "cancelled as the loaded move committed")
    assert await run_statuses(env, runs) == ["queued", "queued"]
    assert await env.dispatch_batch(batch, concurrency=1) == "running"


async def test_the_sweep_fails_a_dead_loaders_batch_and_spares_a_resumed_run(
    env: EngineEnv,
) -> None:
    # no process holds the loader's lock of this `loading` batch: its loader died
    batch, runs = await loading_batch(env, 3)
    assert await env.dispatch_batch(batch, concurrency=2) == "loading"
    two = await started(env, runs)
    await sweep(env)
    assert await batch_status(env, batch) == "failed"
    assert await run_statuses(env, runs) == ["cancelled"] * 3
    # its user resumes one of the started runs: later sweeps leave it be
    assert await env.resume(two[0]) == "queued"
    await sweep(env)
    assert (await env.run(two[0]))["status"] == "queued"
    for run_id in runs:
        env.check_log(run_id)


async def test_the_sweep_finds_a_new_failed_batch_behind_a_thousand_ended_ones(
    env: EngineEnv,
) -> None:
    batch, runs = await loading_batch(env, 3)
    row = await store.get_batch(env.conn, batch)
    assert row is not None
    await env.conn.execute(
        """INSERT INTO batches (flow_id, flow_version, owner_id, status, total, created_at)
           SELECT %s, 1, %s, 'cancelled', 0, now() - interval '1 day' - i * interval '1 second'
             FROM generate_series(1, 1000) AS i""",
        (row["flow_id"], env.owner_id),
    )
    await sweep(env)  # its loader is gone: failed, its unstarted runs cancelled
    assert await run_statuses(env, runs) == ["cancelled"] * 3


async def test_the_loader_notifies_each_chunk_but_the_last_and_starts_small(
    env: EngineEnv,
) -> None:
    flow = await env.create_flow(chain())
    n = batches.LOAD_FIRST_CHUNK + batches.LOAD_CHUNK + 1  # three chunks
    async with listening(env.url, batches.BATCH_CHANNEL) as listener:
        batch = await env.load_batch(flow, [{"n": i} for i in range(n)])
        # two chunks, then "loaded" (the third chunk's commit says nothing of its own)
        assert await heard(env.conn, listener, batches.BATCH_CHANNEL) == [batch] * 3
    cur = await env.conn.execute(
        "SELECT count(*) AS n FROM runs WHERE batch_id = %s AND xmin = "
        "(SELECT xmin FROM runs WHERE batch_id = %s AND batch_index = 0)",
        (batch, batch),
    )
    first = await cur.fetchone()
    assert first is not None and first["n"] == batches.LOAD_FIRST_CHUNK < batches.LOAD_CHUNK
