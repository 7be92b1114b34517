"""A pass-through `output` step folded into its predecessor's commit (FOLD_STEPS, migration 0032).

The same flows are driven twice on one database as a worker drives them, every node passing its
input through as the real `input`, `noop` and `output` nodes do (output = port input): once with
the fold off (the success claims the output step, which is executed and committed in a call of its
own) and once on (the success commits it in the same statement). Every written row (steps with
their lease, payloads, events without their clock, outbox, the run with its outputs) must be
equal; with the fold on, the success hands no step back and the run has ended. Solo commits and
group commits (`step_commit_success_many` with several members) both fold. The cases where it
must not fold: an output node with params or a per-run tweak (it renders something), a successor
that is not an output, and an output whose run has another live step (the second call writes
nothing: the claim is handed back and the worker executes the step as before).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flowstudio.engine import checkpoint
from flowstudio.engine.checkpoint import ClaimedStep, EagerClaim, NextStep
from flowstudio.engine.groupcommit import Committed, Success, commit_successes
from flowstudio.worker.context import context_nodes
from tests.support.engine_env import WORKER, EngineEnv
from tests.support.flows import chain, edge, flow_def, node

pytestmark = pytest.mark.anyio

CHAIN = chain(("a", "noop", {}))
TWO_OUTPUTS = flow_def(
    [node("in", "input"), node("a", "noop"), node("out1", "output"), node("out2", "output")],
    [edge("in", "a"), edge("in", "out2"), edge("a", "out1")],
)
TERMINAL = ("succeeded", "failed", "cancelled")


def eager(fold: bool) -> EagerClaim:
    return EagerClaim(30, context_nodes, fold_steps=fold)


def port_input(step: ClaimedStep, outputs: dict[str, Any], rows: list[dict[str, Any]]) -> Any:
    """What the node reads as its input: the run's inputs for a root, else its predecessor's
    output (every flow here has one predecessor per node)."""
    if step.node_type == "input":
        return dict(step.inputs)
    done = [r["node_id"] for r in rows if r["status"] == "succeeded"]
    return outputs[done[0]] if done else outputs.get("in")


async def succeed(
    env: EngineEnv, step: ClaimedStep, input_: Any, *, fold: bool
) -> tuple[list[Any], NextStep | None]:
    output = dict(step.inputs) if step.node_type == "input" else input_
    return await checkpoint.commit_success(
        env.conn, step, WORKER, input_=input_, output=output, eager=eager(fold)
    )


async def drive(env: EngineEnv, definition: dict[str, Any], *, fold: bool) -> tuple[str, Any]:
    """The run to its end as a worker with eager dispatch; returns (run id, what each success
    handed back: the claimed node or None)."""
    rid = await env.start(definition, {"x": 1})
    handed: list[Any] = []
    outputs: dict[str, Any] = {}
    while (await env.run(rid))["status"] not in TERMINAL:
        ready = sorted(n for n, status in (await env.statuses(rid)).items() if status == "ready")
        assert ready, f"run {rid} is stuck: {await env.statuses(rid)}"
        step: Any = await env.claim(rid, ready[0])
        rows: list[dict[str, Any]] = []
        while step is not None:
            input_ = port_input(step, outputs, rows)
            outputs[step.node_id] = dict(step.inputs) if step.node_type == "input" else input_
            _, nxt = await succeed(env, step, input_, fold=fold)
            handed.append((step.node_id, nxt.step.node_id if nxt else None))
            step, rows = (nxt.step, nxt.context_rows) if nxt else (None, [])
    return rid, handed


# two outputs: out1's fold finds out2 still live (handed back), out2 is its run's last step
@pytest.mark.parametrize(("definition", "folded"), [(CHAIN, 1), (TWO_OUTPUTS, 0)])
async def test_a_folded_output_writes_what_its_own_commit_writes(
    env: EngineEnv, definition: dict[str, Any], folded: int
) -> None:
    off_rid, off_handed = await drive(env, definition, fold=False)
    on_rid, on_handed = await drive(env, definition, fold=True)
    assert await env.picture(on_rid) == await env.picture(off_rid)
    # with the fold on, the output steps committed with their predecessor are not handed back
    assert (
        sum(1 for _, n in off_handed if n and n.startswith("out"))
        - sum(1 for _, n in on_handed if n and n.startswith("out"))
        == folded
    )
    run = await env.run(on_rid)
    assert run["status"] == "succeeded"
    env.check_log(on_rid)


async def test_the_chain_ends_in_the_success_of_its_last_real_step(env: EngineEnv) -> None:
    rid = await env.start(CHAIN, {"x": 1})
    _, nxt = await succeed(env, await env.claim(rid, "in"), {"x": 1}, fold=True)
    assert nxt is not None and nxt.step.node_id == "a"
    outbox, nxt = await succeed(env, nxt.step, {"x": 1}, fold=True)
    assert nxt is None and outbox == []
    run = await env.run(rid)
    assert (run["status"], run["outputs"]) == ("succeeded", {"x": 1})
    assert (await env.statuses(rid))["out"] == "succeeded"
    env.check_log(rid)


@pytest.mark.parametrize("why", ["params", "tweak", "not-an-output"])
async def test_what_renders_something_is_not_folded(env: EngineEnv, why: str) -> None:
    definition = CHAIN
    if why == "params":
        definition = chain(("a", "noop", {}))
        definition["nodes"][-1]["data"]["params"] = {"label": "{{ inputs.x }}"}
    elif why == "not-an-output":
        definition = chain(("a", "noop", {}), ("b", "noop", {}))
    rid = await env.start(definition, {"x": 1})
    step = await env.claim(rid, "in")
    if why == "tweak":
        step = dataclasses.replace(step, tweaks={"out": {"label": "x"}})
    _, nxt = await succeed(env, step, {"x": 1}, fold=True)
    assert nxt is not None
    _, nxt = await succeed(env, nxt.step, {"x": 1}, fold=True)
    assert nxt is not None and nxt.step.node_id in ("out", "b")  # handed back: executed as before
    assert (await env.statuses(rid))[nxt.step.node_id] == "running"


async def test_a_group_commit_folds_each_member(env: EngineEnv) -> None:
    flow_id = await env.create_flow(CHAIN)
    runs = [(await env.start_flow(flow_id, {"i": i})).id for i in range(4)]
    members = []
    for i, rid in enumerate(runs):
        await env.run_node(rid, "in", {"i": i})
        step = await env.claim(rid, "a")
        members.append(Success(step, WORKER, {"i": i}, {"i": i}, eager=eager(True)))
    results = await commit_successes(env.conn, members)
    assert all(isinstance(r, Committed) and r.next is None for r in results)
    for i, rid in enumerate(runs):
        run = await env.run(rid)
        assert (run["status"], run["outputs"]) == ("succeeded", {"i": i})
        assert (await env.statuses(rid))["out"] == "succeeded"
        env.check_log(rid)


async def test_a_fold_whose_run_has_another_live_step_hands_the_claim_back(
    env: EngineEnv,
) -> None:
    rid = await env.start(TWO_OUTPUTS, {"x": 1})
    _, nxt = await succeed(env, await env.claim(rid, "in"), {"x": 1}, fold=True)
    assert nxt is not None and nxt.step.node_id == "a"  # out2 was published
    _, back = await succeed(env, nxt.step, {"x": 1}, fold=True)  # out2 is still ready
    assert back is not None and back.step.node_id == "out1"
    assert (await env.statuses(rid))["out1"] == "running"
    await succeed(env, back.step, {"x": 1}, fold=True)
    await succeed(env, await env.claim(rid, "out2"), {"x": 1}, fold=True)
    assert (await env.run(rid))["status"] == "succeeded"
    env.check_log(rid)
