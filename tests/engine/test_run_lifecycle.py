"""A run's happy paths through the engine's functions: start, claim, commit, branch, join.

Each test starts a run on its own cloned database, plays the worker step by step (`env.claim` /
`env.succeed`) and checks the step states, the outbox rows a relay would publish, the run's outputs
and the event log (gapless, legal, matching the rows).
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import psycopg
import pytest

from flowstudio.engine.checkpoint import IdempotencyKeyReused
from flowstudio.engine.runtxn import NOTIFY_CHANNEL
from flowstudio.store import runs as runs_store
from tests.support.engine_env import EngineEnv
from tests.support.flows import branch_flow, chain, edge, flow_def, node
from tests.support.notifications import heard, listening

pytestmark = pytest.mark.anyio

TWO = chain(("a", "noop", {}), ("b", "noop", {}))


async def test_start_readies_the_roots_and_writes_their_messages(env: EngineEnv) -> None:
    rid = await env.start(TWO, {"x": 1})
    run = await env.run(rid)
    assert run["status"] == "queued" and run["inputs"] == {"x": 1}
    assert await env.statuses(rid) == {
        "in": "ready",
        "a": "pending",
        "b": "pending",
        "out": "pending",
    }
    root = await env.step(rid, "in")
    assert await env.outbox(rid) == [(root["id"], 0)]  # the pointer: step id + fencing token
    env.check_log(rid)


async def test_a_chain_driven_step_by_step_succeeds_with_the_output_nodes_value(
    env: EngineEnv,
) -> None:
    rid = await env.start(TWO, {"x": 1})
    first = await env.claim(rid, "in")
    assert first.attempt == 1 and first.inputs == {"x": 1}
    assert (await env.run(rid))["status"] == "running"
    await env.succeed(first, {"x": 1})
    assert (await env.statuses(rid))["a"] == "ready"
    for nid in ("a", "b", "out"):
        await env.run_node(rid, nid, {"text": f"from {nid}"})
    run = await env.run(rid)
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "from out"}
    assert set((await env.statuses(rid)).values()) == {"succeeded"}
    assert len(await env.outbox(rid)) == 4  # one message per step, none twice
    env.check_log(rid)


async def test_the_same_idempotency_key_returns_the_same_run(env: EngineEnv) -> None:
    fid = await env.create_flow(TWO)
    first = await env.start_flow(fid, {"x": 1}, key="k-1")
    again = await env.start_flow(fid, {"x": 2}, key="k-1")
    assert first.created and not again.created and again.id == first.id
    assert (await env.run(first.id))["inputs"] == {"x": 1}
    other = await env.create_flow(TWO)
    with pytest.raises(IdempotencyKeyReused):
        await env.start_flow(other, key="k-1")


BRANCHY = branch_flow()


async def test_a_branch_skips_the_untaken_side_and_the_merge_still_runs(env: EngineEnv) -> None:
    rid = await env.start(BRANCHY, {"score": 9})
    await env.run_node(rid, "in")
    c = await env.claim(rid, "c")
    await env.succeed(c, {"value": True}, branch="true")
    states = await env.statuses(rid)
    assert states["hi"] == "ready" and states["lo"] == "skipped" and states["lo2"] == "skipped"
    assert states["m"] == "pending"
    await env.run_node(rid, "hi", {"text": "high"})
    await env.run_node(rid, "m")
    await env.run_node(rid, "out", {"text": "high"})
    assert (await env.run(rid))["status"] == "succeeded"
    env.check_log(rid)


async def test_a_join_waits_for_every_branch(env: EngineEnv) -> None:
    defn = flow_def(
        [node("in", "input"), node("a", "noop"), node("b", "noop"), node("j", "merge")],
        [edge("in", "a"), edge("in", "b"), edge("a", "j"), edge("b", "j")],
    )
    rid = await env.start(defn)
    await env.run_node(rid, "in")
    assert (await env.statuses(rid))["a"] == (await env.statuses(rid))["b"] == "ready"
    await env.run_node(rid, "a", {"v": "a"})
    assert (await env.statuses(rid))["j"] == "pending"
    await env.run_node(rid, "b", {"v": "b"})
    assert (await env.statuses(rid))["j"] == "ready"
    await env.run_node(rid, "j", {"a": {"v": "a"}, "b": {"v": "b"}})
    assert (await env.run(rid))["status"] == "succeeded"
    env.check_log(rid)


async def test_each_commit_notifies_its_last_seq_and_the_runs_end_names_its_status(
    env: EngineEnv,
) -> None:
    """`fs_run_events` carries `run:seq` per commit of a watched run (the start, each claim and
    success); the commit that ends the run adds `:status`, so a waiter (the bench's sequential
    driver) needs no query per step to see a run end."""
    async with listening(env.url, NOTIFY_CHANNEL) as listen:
        rid = await env.start(TWO, watched_for=60)
        for node_id in ("in", "a", "b", "out"):
            await env.run_node(rid, node_id)
        payloads = await heard(env.conn, listen, NOTIFY_CHANNEL)
    mine = [p for p in payloads if p.startswith(rid)]
    assert mine[-1] == f"{rid}:{(await env.run(rid))['event_seq']}:succeeded"
    assert len(mine) == 1 + 2 * 4 and all(p.count(":") == 1 for p in mine[:-1])


async def heard_of(env: EngineEnv, listen: psycopg.AsyncConnection[Any], rid: str) -> list[str]:
    """What `listen` heard on the run-events channel about run `rid` since the last look."""
    return [p for p in await heard(env.conn, listen, NOTIFY_CHANNEL) if p.startswith(rid)]


async def test_only_a_watched_runs_commits_notify(env: EngineEnv) -> None:
    """A NOTIFY serializes commits database-wide (migration 0034): a run nobody follows sends
    none; from the moment a follower watches it (`store.runs.watch_run`), each commit does, and
    none once the watch has run out."""
    async with listening(env.url, NOTIFY_CHANNEL) as listen:
        rid = await env.start(TWO)
        await env.run_node(rid, "in")
        assert await heard_of(env, listen, rid) == []
        await runs_store.watch_run(env.conn, rid, 60)
        await env.run_node(rid, "a")
        seq = (await env.run(rid))["event_seq"]
        claim, success = await heard_of(env, listen, rid)
        assert int(claim.split(":")[1]) < seq and success == f"{rid}:{seq}"
        await env.conn.execute(  # the watch ran out
            "UPDATE runs SET watched_until = now() - interval '1 second' WHERE id = %s", (rid,)
        )
        await env.run_node(rid, "b")
        await env.run_node(rid, "out")
        assert (await env.run(rid))["status"] == "succeeded"
        assert await heard_of(env, listen, rid) == []
    env.check_log(rid)


async def test_a_follower_that_watches_mid_run_always_hears_its_end(env: EngineEnv) -> None:
    """The watch against the commits racing it (migration 0034): a follower LISTENs, watches the
    run (its own connection) at a random point of the run's commits, then reads it. Either the run
    has ended by that read, or the NOTIFY of its end comes: a commit that locked the run before
    the watch is read, one that locks it after sees the watch. 40 runs, every one heard."""
    async with (
        listening(env.url, NOTIFY_CHANNEL) as listen,
        await psycopg.AsyncConnection.connect(env.url, autocommit=True) as follower,
    ):
        read_ended = 0
        for _ in range(40):
            rid = await env.start(TWO)

            async def drive(run_id: str = rid) -> None:
                for node_id in ("in", "a", "b", "out"):
                    await env.run_node(run_id, node_id)

            async with anyio.create_task_group() as tg:
                tg.start_soon(drive)
                await anyio.sleep(random.uniform(0, 0.012))
                await runs_store.watch_run(follower, rid, 60)
                cur = await follower.execute("SELECT status FROM runs WHERE id = %s", (rid,))
                row = await cur.fetchone()
                assert row is not None
            if row[0] == "succeeded":
                read_ended += 1
                continue
            heard = False
            async for note in listen.notifies(timeout=5):
                if note.payload.startswith(rid) and note.payload.endswith(":succeeded"):
                    heard = True
                    break
            assert heard, f"run {rid}: not ended when read, and its end was never notified"
        assert read_ended < 40  # the watch did come before the end, at least sometimes


async def test_a_watch_that_waited_for_the_runs_lock_lasts_its_whole_length(
    env: EngineEnv,
) -> None:
    """Found by review: a plain UPDATE computes `clock_timestamp()` before it waits for the row
    lock and keeps it when the holder wrote nothing (a commit that locked the run FOR UPDATE and
    answered `general` or `lost`), so a watch that waited 1 s lasted 29 s of 30. Locked first,
    it lasts 30 s from the moment it is set."""
    rid = await env.start(TWO)
    holder = await psycopg.AsyncConnection.connect(env.url, autocommit=True)
    try:
        async with anyio.create_task_group() as tg, holder.transaction():
            await holder.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (rid,))
            tg.start_soon(runs_store.watch_run, env.conn, rid, 30)
            await anyio.sleep(1.0)  # the watch waits for this lock, released with no write
    finally:
        await holder.close()
    cur = await env.conn.execute(
        "SELECT extract(epoch FROM watched_until - clock_timestamp())::float8 AS left FROM runs "
        "WHERE id = %s",
        (rid,),
    )
    row = await cur.fetchone()
    assert row is not None and row["left"] > 29.5, f"the watch lasts {row and row['left']} s of 30"
