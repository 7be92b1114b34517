"""Run control and fencing through the engine's functions: cancel, resume, fork, stale tokens.

Cancel ends every live step (pending, ready, running) and the running step's late commit is refused;
resume reopens only the failed/cancelled steps (committed ones never run again); fork copies the
committed upstream steps with their outputs and runs the rest; a claim or commit with a stale fencing
token (an old message, a worker whose lease was reaped) raises `LostRace` and changes nothing.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.engine.runtxn import LostRace
from tests.support.engine_env import EngineEnv
from tests.support.flows import chain

pytestmark = pytest.mark.anyio

ABC = chain(("a", "noop", {}), ("b", "noop", {}), ("c", "noop", {}))


async def test_cancel_reaches_running_ready_and_pending_steps(env: EngineEnv) -> None:
    rid = await env.start(ABC)
    await env.run_node(rid, "in")
    running = await env.claim(rid, "a")
    assert await env.cancel(rid) is True
    assert (await env.run(rid))["status"] == "cancelled"
    assert await env.statuses(rid) == {
        "in": "succeeded",
        "a": "cancelled",
        "b": "cancelled",
        "c": "cancelled",
        "out": "cancelled",
    }
    before = await env.snapshot(rid)
    with pytest.raises(LostRace):  # the worker finishes after the cancel: its commit is refused
        await env.succeed(running, {"late": True})
    assert await env.snapshot(rid) == before
    assert await env.cancel(rid) is False  # already terminal
    env.check_log(rid)


async def test_resume_of_a_failed_run_reopens_only_what_did_not_commit(env: EngineEnv) -> None:
    rid = await env.start(ABC)
    await env.run_node(rid, "in")
    await env.run_node(rid, "a", {"v": "a"})
    await env.fail(await env.claim(rid, "b"), "broken", retryable=False)
    assert (await env.run(rid))["status"] == "failed"
    a_before = await env.step(rid, "a")

    assert await env.resume(rid) == "queued"
    assert await env.statuses(rid) == {
        "in": "succeeded",
        "a": "succeeded",
        "b": "ready",
        "c": "pending",
        "out": "pending",
    }
    b = await env.step(rid, "b")
    assert b["error"] is None and b["max_attempts"] == b["attempt"] + 1  # a fresh budget
    second = await env.claim(rid, "b", token=b["attempt"])
    assert second.attempt == 2
    await env.succeed(second, {"v": "b"})
    await env.run_node(rid, "c")
    await env.run_node(rid, "out", {"text": "done"})
    run = await env.run(rid)
    assert run["status"] == "succeeded" and run["error"] is None
    assert await env.step(rid, "a") == a_before  # committed work never ran again
    env.check_log(rid)


async def test_resume_of_a_cancelled_run_keeps_its_committed_steps(env: EngineEnv) -> None:
    rid = await env.start(ABC)
    await env.run_node(rid, "in")
    await env.run_node(rid, "a", {"v": "a"})
    await env.cancel(rid)
    await env.resume(rid)
    states = await env.statuses(rid)
    assert states["a"] == "succeeded" and states["b"] == "ready" and states["c"] == "pending"
    env.check_log(rid)


async def test_fork_copies_upstream_outputs_and_runs_the_rest(env: EngineEnv) -> None:
    rid = await env.start(ABC, {"x": 1})
    for nid in ("in", "a", "b", "c", "out"):
        await env.run_node(rid, nid, {"v": nid})
    parent_before = await env.snapshot(rid)

    fid = await env.fork(rid, "b", {"x": 2})
    fork = await env.run(fid)
    assert fork["inputs"] == {"x": 2} and str(fork["parent_run_id"]) == rid
    steps = await env.steps(fid)
    assert {n: s["status"] for n, s in steps.items()} == {
        "in": "succeeded",
        "a": "succeeded",
        "b": "ready",
        "c": "pending",
        "out": "pending",
    }
    assert steps["a"]["output"] == {"v": "a"} and steps["in"]["output"] == {"v": "in"}
    await env.run_node(fid, "b", {"v": "b2"})
    await env.run_node(fid, "c", {"v": "c2"})
    await env.run_node(fid, "out", {"text": "forked"})
    assert (await env.run(fid))["outputs"] == {"text": "forked"}
    assert await env.snapshot(rid) == parent_before  # the parent is untouched
    env.check_log(fid)


async def test_a_stale_or_repeated_claim_changes_nothing(env: EngineEnv) -> None:
    rid = await env.start(ABC)
    before = await env.snapshot(rid)
    with pytest.raises(LostRace):
        await env.claim(rid, "in", token=5)  # a message from another attempt
    assert await env.snapshot(rid) == before
    await env.claim(rid, "in")
    after_claim = await env.snapshot(rid)
    with pytest.raises(LostRace):
        await env.claim(rid, "in", token=0, worker="worker-b")  # the same message, redelivered
    assert await env.snapshot(rid) == after_claim


async def test_a_worker_whose_lease_was_reaped_cannot_commit(env: EngineEnv) -> None:
    rid = await env.start(ABC)
    await env.run_node(rid, "in")
    old = await env.claim(rid, "a")
    await env.expire_lease(rid, "a")
    assert await env.reap() == 1
    assert (await env.step(rid, "a"))["status"] == "ready"
    new = await env.claim(rid, "a", token=old.attempt, worker="worker-b")
    assert new.attempt == old.attempt + 1
    before = await env.snapshot(rid)
    with pytest.raises(LostRace):
        await env.succeed(old, {"stale": True})
    with pytest.raises(LostRace):
        await env.fail(old, "stale")
    assert await env.snapshot(rid) == before
    await env.succeed(new, {"fresh": True}, worker="worker-b")
    assert (await env.step(rid, "a"))["output"] == {"fresh": True}
    env.check_log(rid)


async def test_a_heartbeat_extends_only_the_leases_still_held(env: EngineEnv) -> None:
    rid = await env.start(ABC)
    step = await env.claim(rid, "in")
    assert await env.heartbeat([step]) == {step.step_id}
    assert await env.heartbeat([step], worker="worker-b") == set()  # not its lease
    await env.expire_lease(rid, "in")
    await env.reap()
    assert await env.heartbeat([step]) == set()  # reaped: the worker learns it lost the step


async def test_a_heartbeat_never_waits_for_a_step_row_a_commit_holds(env: EngineEnv) -> None:
    """Replays a deadlock `bench --llm` hit once a run: a heartbeat that waited for one step row
    (locked by a group commit) while holding the others it had extended, and the group waiting for
    one of those, until PostgreSQL broke the cycle after deadlock_timeout (a 1 s stall)."""
    first, second = await env.start(ABC), await env.start(ABC)
    busy, free = await env.claim(first, "in"), await env.claim(second, "in")

    async def lease(step: ClaimedStep) -> datetime:
        cur = await env.conn.execute(
            "SELECT lease_expires_at FROM steps WHERE id = %s", (step.step_id,)
        )
        row = await cur.fetchone()
        assert row is not None
        return row["lease_expires_at"]

    lease_before = await lease(busy)
    async with await psycopg.AsyncConnection.connect(env.url) as committer:
        await committer.execute(  # a commit in flight holds the row: its transaction is open
            "SELECT 1 FROM steps WHERE id = %s FOR UPDATE", (busy.step_id,)
        )
        await env.conn.execute("SET lock_timeout = '200ms'")  # a wait fails the test, never hangs
        try:
            held = await env.heartbeat([busy, free])
        finally:
            await env.conn.execute("RESET lock_timeout")
        assert held == {
            busy.step_id,
            free.step_id,
        }  # the locked one is still ours, as far as we know
        assert await lease(busy) == lease_before  # not extended now
        assert await lease(free) > lease_before
        await committer.rollback()
    assert await env.heartbeat([busy, free]) == {busy.step_id, free.step_id}
    assert await lease(busy) > lease_before  # extended next time
    await env.succeed(busy, None)
    assert await env.heartbeat([busy, free]) == {free.step_id}  # committed: no longer held


async def test_a_released_step_is_ready_again_with_the_same_attempt(env: EngineEnv) -> None:
    rid = await env.start(ABC)
    step = await env.claim(rid, "in")
    await env.release(step)
    row = await env.step(rid, "in")
    assert row["status"] == "ready" and row["attempt"] == step.attempt
    again = await env.claim(rid, "in", token=step.attempt)
    assert again.attempt == step.attempt + 1
    env.check_log(rid)
