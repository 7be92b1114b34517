"""A batch is finished as its last run ends, not at the dispatcher's next poll (migration 0026).

Once a batch has no unstarted run left (its tail), each started run that ends NOTIFYs the
dispatchers' channel (`engine.batches.BATCH_CHANNEL`) with the batch id, and the dispatcher passes
at once; before the tail nothing is sent (the poll starts the next runs), and runs cancelled
without ever starting send nothing. A second connection LISTENs; "nothing was sent" is read up to a
marker NOTIFY sent afterwards (notifications arrive in commit order), never by waiting a while.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from flowstudio.engine.batches import BATCH_CHANNEL, cancel_batch
from flowstudio.store.batches import UNSTARTED
from flowstudio.store.statuses import RUN_ENDED
from tests.support.engine_env import EngineEnv
from tests.support.flows import chain
from tests.support.notifications import heard, listening

pytestmark = pytest.mark.anyio


@pytest.fixture
async def listener(env: EngineEnv) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with listening(env.url, BATCH_CHANNEL) as conn:
        yield conn


async def started(env: EngineEnv, runs: list[str]) -> list[str]:
    """The runs the dispatcher started (it picks unstarted runs in no set order)."""
    return [r for r in runs if (await env.statuses(r))["in"] != "pending"]


async def finish(env: EngineEnv, run_id: str) -> None:
    await env.run_node(run_id, "in")
    await env.run_node(run_id, "out")
    assert (await env.run(run_id))["status"] == "succeeded"


async def test_each_run_of_the_tail_wakes_the_dispatcher_and_the_last_finishes_the_batch(
    env: EngineEnv, listener: psycopg.AsyncConnection[Any]
) -> None:
    flow = await env.create_flow(chain())
    batch = await env.load_batch(flow, [{"n": i} for i in range(3)])
    await heard(env.conn, listener, BATCH_CHANNEL)  # (the batch's own "loaded" notification)
    runs = await env.batch_runs(batch)
    assert await env.dispatch_batch(batch, concurrency=2) == "running"  # two of them start
    first, second = await started(env, runs)
    (third,) = set(runs) - {first, second}

    await finish(env, first)
    assert (
        await heard(env.conn, listener, BATCH_CHANNEL) == []
    )  # the third is unstarted: the poll starts it
    assert await env.dispatch_batch(batch, concurrency=2) == "running"  # the third starts
    assert await started(env, [third]) == [third]

    await finish(env, second)
    assert await heard(env.conn, listener, BATCH_CHANNEL) == [
        batch
    ]  # the tail: the dispatcher passes now
    assert await env.dispatch_batch(batch, concurrency=2) == "running"  # the third is live
    await finish(env, third)
    assert await heard(env.conn, listener, BATCH_CHANNEL) == [batch]
    assert await env.dispatch_batch(batch, concurrency=2) == "succeeded"


async def test_runs_cancelled_without_starting_send_nothing(
    env: EngineEnv, listener: psycopg.AsyncConnection[Any]
) -> None:
    """A cancelled batch's unstarted runs are cancelled in bulk: the trigger does not fire for
    them (no probe of the batch per row); the started run that is cancelled does."""
    flow = await env.create_flow(chain())
    batch = await env.load_batch(flow, [{"n": i} for i in range(50)])
    assert await env.dispatch_batch(batch, concurrency=1) == "running"
    await heard(env.conn, listener, BATCH_CHANNEL)
    assert await cancel_batch(env.conn, batch, "cancelled in a test") is not None
    # the started run ended while 49 were unstarted, and those 49 fire nothing (they would have
    # sent the batch id: at the end of the bulk statement none is unstarted any more)
    assert await heard(env.conn, listener, BATCH_CHANNEL) == []
    cur = await env.conn.execute(
        "SELECT count(*) AS n FROM runs WHERE batch_id = %s AND status = 'cancelled'", (batch,)
    )
    row = await cur.fetchone()
    assert row is not None and row["n"] == 50


async def test_the_trigger_names_the_codes_channel_statuses_and_unstarted_test(
    env: EngineEnv,
) -> None:
    cur = await env.conn.execute("""SELECT pg_get_triggerdef(t.oid) AS trig,
                  pg_get_functiondef(t.tgfoid) AS func
             FROM pg_trigger t WHERE t.tgname = 'runs_batch_ended'""")
    row = await cur.fetchone()
    assert row is not None
    when = re.search(r"new\.status = ANY \(ARRAY\[([^\]]*)\]\)", row["trig"], re.IGNORECASE)
    assert when is not None, row["trig"]
    assert set(re.findall(r"'(\w+)'::text", when.group(1))) == set(RUN_ENDED)
    assert f"'{BATCH_CHANNEL}'" in row["func"]
    assert UNSTARTED in row["func"]  # the dispatcher's own test for an unstarted run
