"""A group claim (`engine.groupclaim.claim_steps`) writes, per member, what its own claim writes.

The same scene is played twice on one database, once claiming each message alone
(`claim.claim_step`) and once in ONE transaction: three queued runs of a chain (each claim
starts its run), a running run with a ready step (its run does not move), a stale message (a token its step no longer has) and a message for a run that does not
exist. Every written row (steps with lease and clocks' presence, events without their clock,
outbox, run row) and every returned step must be equal between the two, the stale and unknown
messages are LostRace for themselves only and write nothing, and every run then runs to its end
with a consistent event log. With and without pipelining. A claim that also reads the claimed
step's context (the worker's claims, alone and grouped) writes the same rows and reads what the
worker's own query would. The worker-level grouping, and a worker killed between the group's two
messages, are in tests/integration/test_crash_groups.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flowstudio.engine.checkpoint import ClaimedStep, NextStep
from flowstudio.engine.claim import claim_step_reading_context
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.groupclaim import claim_steps, claim_steps_reading_context
from flowstudio.engine.runtxn import LostRace
from flowstudio.engine.txnsql import STEP_CONTEXT
from flowstudio.queue.message import StepMessage
from flowstudio.worker.context import context_nodes
from tests.integration.test_runtxn import pipelined  # noqa: F401 -- fixture: with and without
from tests.support.engine_env import WORKER, EngineEnv
from tests.support.flows import chain

pytestmark = pytest.mark.anyio

CHAIN = chain(("a", "noop", {}))


async def scene(env: EngineEnv, flow_id: str) -> tuple[list[str], list[StepMessage]]:
    """Runs q0..q2 queued, run r running with its second step ready, and the claims of
    their messages, then a stale one (q0's step with a token it does not have) and one of a run
    that does not exist."""
    queued = [(await env.start_flow(flow_id, {"i": i})).id for i in range(3)]
    running = (await env.start_flow(flow_id, {"i": 3})).id
    await env.run_node(running, "in")
    runs = [*queued, running]
    claims = []
    for rid, node_id in zip(runs, ["in", "in", "in", "a"], strict=True):
        s = await env.step(rid, node_id)
        assert s["status"] == "ready"
        claims.append(StepMessage(rid, s["id"], s["attempt"]))
    stale = StepMessage(claims[0].run_id, claims[0].step_id, claims[0].token + 1)
    unknown = StepMessage(str(uuid.uuid4()), claims[1].step_id, claims[1].token)
    return runs, [*claims, stale, unknown]


def described(step: ClaimedStep | LostRace, runs: list[str]) -> Any:
    """A claim's result without its ids (runs as their index in the scene)."""
    if isinstance(step, LostRace):
        return "lost"
    return (
        runs.index(step.run_id),
        step.node_id,
        step.item_index,
        step.node_type,
        step.attempt,
        step.max_attempts,
        step.flow_version,
        step.inputs,
        step.tweaks,
        step.in_batch,
    )


@pytest.mark.usefixtures("pipelined")
async def test_a_group_claim_writes_what_each_claim_alone_writes(env: EngineEnv) -> None:
    flow_id = await env.create_flow(CHAIN)
    pictures = []
    for together in (False, True):
        runs, claims = await scene(env, flow_id)
        if together:
            results: list[ClaimedStep | LostRace] = await claim_steps(
                env.conn, claims[:4], worker_id=WORKER, lease_seconds=30
            )
            lost = await claim_steps(env.conn, claims[4:], worker_id=WORKER, lease_seconds=30)
            results += lost
        else:
            results = []
            for c in claims:
                try:
                    results.append(await env.claim_message(c.run_id, c.step_id, c.token))
                except LostRace as exc:
                    results.append(exc)
        assert [isinstance(r, LostRace) for r in results] == [False] * 4 + [True, True]
        for rid in runs:
            assert (await env.run(rid))["status"] == "running"
        pictures.append(
            (
                [described(r, runs) for r in results],
                [repr(await env.picture(r)) for r in runs],
            )
        )
        for rid in runs:  # every run runs to its end
            for s in results[: len(runs)]:
                assert isinstance(s, ClaimedStep)
                if s.run_id == rid:
                    await env.succeed(s)
            for node_id in ("a", "out") if rid != runs[3] else ("out",):
                await env.run_node(rid, node_id)
            assert (await env.run(rid))["status"] == "succeeded"
            env.check_log(rid)
    assert pictures[1] == pictures[0]


async def test_a_member_whose_fence_fails_leaves_the_others_claimed(env: EngineEnv) -> None:
    flow_id = await env.create_flow(CHAIN)
    runs, claims = await scene(env, flow_id)
    before = repr(await env.picture(runs[0]))
    stale = claims[4]  # q0's message with a token its step does not have
    results = await claim_steps(
        env.conn, [stale, claims[1], claims[2]], worker_id=WORKER, lease_seconds=30
    )
    assert isinstance(results[0], LostRace)
    assert [r.run_id for r in results[1:] if isinstance(r, ClaimedStep)] == runs[1:3]
    assert repr(await env.picture(runs[0])) == before  # nothing written for the lost member
    assert (await env.run(runs[0]))["status"] == "queued"


async def test_a_group_holds_one_claim_per_run(env: EngineEnv) -> None:
    flow_id = await env.create_flow(CHAIN)
    _, claims = await scene(env, flow_id)
    with pytest.raises(ValueError, match="distinct runs"):
        await claim_steps(env.conn, [claims[0], claims[4]], worker_id=WORKER, lease_seconds=30)


async def step_context(env: EngineEnv, step: ClaimedStep) -> Any:
    """What the worker would query for the step's context (`worker.context.build_context`)."""
    graph = await load_graph(env.conn, step.flow_id, step.flow_version)
    cur = await env.conn.execute(
        STEP_CONTEXT,
        {"ctx_run": step.run_id, "ctx_nodes": list(context_nodes(graph, step.node_id))},
    )
    return sorted(await cur.fetchall(), key=lambda r: r["node_id"])


@pytest.mark.parametrize("together", [False, True], ids=["alone", "group"])
async def test_a_claim_reading_context_writes_the_same_and_reads_what_the_worker_would(
    env: EngineEnv, together: bool
) -> None:
    """The worker's claims read the claimed step's context in their last statement."""
    flow_id = await env.create_flow(CHAIN)
    pictures = []
    for read in (False, True):
        runs, claims = await scene(env, flow_id)
        if together:
            results = await claim_steps_reading_context(
                env.conn,
                claims[:4],
                worker_id=WORKER,
                lease_seconds=30,
                context_nodes=context_nodes if read else None,
            )
        else:
            results = [
                await claim_step_reading_context(
                    env.conn,
                    run_id=c.run_id,
                    step_id=c.step_id,
                    token=c.token,
                    worker_id=WORKER,
                    lease_seconds=30,
                    context_nodes=context_nodes if read else None,
                )
                for c in claims[:4]
            ]
        for r in results:
            assert isinstance(r, NextStep)
            if not read:
                assert r.context_rows is None
                continue
            assert r.context_rows is not None
            rows = sorted(r.context_rows, key=lambda x: x["node_id"])
            assert rows == await step_context(env, r.step)
            # `in` reads no other node; `a` reads `in`'s state and output
            assert bool(rows) == (r.step.node_id == "a")
        pictures.append(
            (
                [described(r.step, runs) for r in results if isinstance(r, NextStep)],
                [repr(await env.picture(r)) for r in runs],
            )
        )
    assert pictures[1] == pictures[0]
