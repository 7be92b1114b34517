"""The dispatcher starts a batch run past its pass-through `input` root (FOLD_STEPS, 0033).

Two identical 5-item batches of `input -> a -> output` are started on one database: one the
unfolded way (the dispatcher readies `in` and publishes it; a worker claims it, which starts the
run, and commits its success, input = output = the run's inputs, which readies `a` and publishes
it), one folded (`bulk.start_runs_folded`: one call). Every run's rows (steps with their clocks'
presence, payloads, events without their clock, outbox rows once the publisher has sent them, the
run row) and the messages to publish (`a`'s, by input index and token) must be equal; then every
run runs to its end with a consistent event log. A flow whose start is not one pass-through input
(params on it, two roots) is started the unfolded way, and a run whose root is no longer pending
is left to the general path.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowstudio.engine import batches, bulk, checkpoint
from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import decode_definition
from tests.support.engine_env import WORKER, EngineEnv
from tests.support.flows import chain, edge, flow_def, node

pytestmark = pytest.mark.anyio

CHAIN = chain(("a", "noop", {}))
TWO_ROOTS = flow_def(
    [node("in1", "input"), node("in2", "input"), node("j", "merge"), node("out", "output")],
    [edge("in1", "j"), edge("in2", "j"), edge("j", "out")],
)


async def start(env: EngineEnv, *, fold: bool) -> tuple[list[str], list[Any]]:
    """Load and start a 5-item batch; returns its runs and the messages left to publish for them
    (as input index, node, token), each run's root already past (folded, or claimed and committed
    as a worker does)."""
    flow_id = await env.create_flow(CHAIN)
    batch_id = await env.load_batch(flow_id, [{"i": i} for i in range(5)])
    runs = await env.batch_runs(batch_id)
    messages = await batches.dispatch_batch(env.conn, batch_id, 5, fold=fold)
    if not fold:  # the publisher sends `in`'s messages (and deletes their rows); a worker runs it
        await env.conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([m.id for m in messages],))
        dispatched, messages = messages, []
        for m in dispatched:
            step = await env.claim_message(m.run_id, m.step_id, m.token)
            outbox, nxt = await checkpoint.commit_success(
                env.conn, step, WORKER, input_=step.inputs, output=dict(step.inputs)
            )
            assert nxt is None
            messages += outbox
    index = {r: i for i, r in enumerate(runs)}
    nodes = {}
    for r in runs:
        nodes.update({s["id"]: n for n, s in (await env.steps(r)).items()})
    return runs, sorted((index[m.run_id], nodes[m.step_id], m.token) for m in messages)


async def test_a_folded_start_writes_what_dispatch_claim_and_commit_write(env: EngineEnv) -> None:
    unfolded_runs, unfolded_messages = await start(env, fold=False)
    folded_runs, folded_messages = await start(env, fold=True)
    assert folded_messages == unfolded_messages == [(i, "a", 0) for i in range(5)]
    for plain, folded in zip(unfolded_runs, folded_runs, strict=True):
        assert await env.picture(folded) == await env.picture(plain)
        run = await env.run(folded)
        assert run["status"] == "running" and run["started_at"] is not None
    for rid in folded_runs:  # every run runs to its end
        for node_id in ("a", "out"):
            await env.run_node(rid, node_id, {"i": 0})
        assert (await env.run(rid))["status"] == "succeeded"
        env.check_log(rid)


def test_only_a_lone_pass_through_input_start_is_folded() -> None:
    graph = FlowGraph.build(decode_definition(CHAIN))
    assert bulk.folded_start(graph) == ("in", ("a",))
    assert bulk.folded_start(FlowGraph.build(decode_definition(TWO_ROOTS))) is None
    with_params = chain(("a", "noop", {}))
    with_params["nodes"][0]["data"]["params"] = {"label": "{{ inputs.i }}"}
    assert bulk.folded_start(FlowGraph.build(decode_definition(with_params))) is None


async def test_a_flow_that_cannot_fold_starts_the_unfolded_way(env: EngineEnv) -> None:
    flow_id = await env.create_flow(TWO_ROOTS)
    batch_id = await env.load_batch(flow_id, [{"i": 0}])
    messages = await batches.dispatch_batch(env.conn, batch_id, 5, fold=True)
    (rid,) = await env.batch_runs(batch_id)
    assert len(messages) == 2
    assert (await env.statuses(rid))["in1"] == "ready"


async def test_a_run_whose_root_is_not_pending_is_left_to_the_general_path(
    env: EngineEnv,
) -> None:
    flow_id = await env.create_flow(CHAIN)
    batch_id = await env.load_batch(flow_id, [{"i": 0}, {"i": 1}])
    first, second = await env.batch_runs(batch_id)
    await env.conn.execute(
        "UPDATE steps SET status = 'ready' WHERE run_id = %s AND node_id = 'in'", (second,)
    )
    async with env.conn.transaction():
        messages, left = await bulk.start_runs_folded(env.conn, [first, second], "in", ("a",))
    assert [m.run_id for m in messages] == [first] and [str(r) for r in left] == [second]
    assert (await env.statuses(first))["in"] == "succeeded"
    assert (await env.statuses(second))["a"] == "pending"
