"""The dispatcher starts a chunk of unstarted runs in one statement, writing what `advance_run` writes.

Two identical batches are loaded on one database and dispatched, one through the general path (each
run in its savepoint: lock, states, ready move, flush) and one in one statement
(`bulk.start_unstarted_runs`). Every run's rows (steps with their clocks' presence, events without
their clock, outbox, the run row), the messages handed to the publisher (run by input index, node,
token, in order) and the NOTIFYs sent must be equal; then every run runs to its end with a
consistent event log. Flows: a chain (one root) and one with two roots joined. A run that is not
unstarted after all (the statement finds nothing to start in it) is left to the general path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from flowstudio.engine import batches, bulk
from flowstudio.engine.runtxn import NOTIFY_CHANNEL
from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import decode_definition
from flowstudio.store import runs as runs_store
from tests.support.engine_env import EngineEnv
from tests.support.flows import chain, edge, flow_def, node
from tests.support.notifications import heard, listening

pytestmark = pytest.mark.anyio

CHAIN = chain(("a", "noop", {}))
TWO_ROOTS = flow_def(
    [node("in1", "input"), node("in2", "input"), node("j", "merge"), node("out", "output")],
    [edge("in1", "j"), edge("in2", "j"), edge("j", "out")],
)


@pytest.fixture
async def listener(env: EngineEnv) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with listening(env.url, NOTIFY_CHANNEL) as conn:
        yield conn


async def dispatched(
    env: EngineEnv,
    listener: psycopg.AsyncConnection[Any],
    definition: dict[str, Any],
    *,
    at_once: bool,
) -> tuple[list[str], list[Any], list[str]]:
    """Load a 5-item batch, start 3 runs; returns its runs, the messages (as input index, node,
    token) and the NOTIFY payloads (run ids as input indexes)."""
    flow_id = await env.create_flow(definition)
    batch_id = await env.load_batch(flow_id, [{"i": i} for i in range(5)])
    runs = await env.batch_runs(batch_id)
    for r in runs[:4]:  # followed live (migration 0034): their starts NOTIFY, the 5th's does not
        await runs_store.watch_run(env.conn, r, 60)
    await heard(env.conn, listener, NOTIFY_CHANNEL)
    messages = await batches.dispatch_batch(env.conn, batch_id, 3, at_once=at_once)
    index = {r: i for i, r in enumerate(runs)}
    nodes = {}
    for r in runs:
        nodes.update({s["id"]: n for n, s in (await env.steps(r)).items()})
    described = [(index[m.run_id], nodes[m.step_id], m.token) for m in messages]
    notes = [
        f"{index[p.split(':')[0]]}:{p.split(':', 1)[1]}"
        for p in await heard(env.conn, listener, NOTIFY_CHANNEL)
    ]
    return runs, described, notes


@pytest.mark.parametrize("name", ["chain", "two-roots"])
async def test_one_statement_writes_what_each_runs_savepoint_writes(
    env: EngineEnv, listener: psycopg.AsyncConnection[Any], name: str
) -> None:
    definition = {"chain": CHAIN, "two-roots": TWO_ROOTS}[name]
    roots = 2 if name == "two-roots" else 1
    pictures = []
    for runs, messages, notes in [
        await dispatched(env, listener, definition, at_once=False),
        await dispatched(env, listener, definition, at_once=True),
    ]:
        # the dispatcher picks unstarted runs in no set order: which 3 of the 5 differs
        started = [i for i, r in enumerate(runs) if (await env.run(r))["event_seq"] > 1]
        assert len(started) == 3
        assert sorted({i for i, _, _ in messages}) == started and len(messages) == 3 * roots
        watched = [i for i in started if i < 4]  # one NOTIFY per run followed live
        assert sorted(int(n.split(":")[0]) for n in notes) == watched
        assert {n.split(":", 1)[1] for n in notes} == {str(1 + roots)}  # seq 1 queued, then readies
        for r in runs:
            run = await env.run(r)
            assert run["status"] == "queued" and run["started_at"] is None
        pictures.append(
            (
                sorted([(n, t) for _, n, t in messages]),
                sorted([repr(await env.picture(r)) for r in runs]),
            )
        )
        last = runs
        batch_of_last = (await env.run(runs[0]))["batch_id"]
    assert pictures[1] == pictures[0]
    messages = await batches.dispatch_batch(env.conn, batch_of_last, 5)  # the 2 left
    assert len(messages) == 2 * roots
    for rid in last:  # every run runs to its end
        for node_id in ("in", "a", "out") if name == "chain" else ("in1", "in2", "j", "out"):
            await env.run_node(rid, node_id)
        assert (await env.run(rid))["status"] == "succeeded"
    for rid in last:
        env.check_log(rid)


def test_a_flows_start_is_its_roots() -> None:
    graph = FlowGraph.build(decode_definition(TWO_ROOTS))
    assert bulk.start_nodes(graph) == ("in1", "in2")
    assert bulk.start_nodes(FlowGraph.build(decode_definition(CHAIN))) == ("in",)


async def test_a_run_the_statement_cannot_start_goes_the_general_way(env: EngineEnv) -> None:
    flow_id = await env.create_flow(CHAIN)
    batch_id = await env.load_batch(flow_id, [{"i": 0}, {"i": 1}])
    first, second = await env.batch_runs(batch_id)
    # as if its start had begun elsewhere: its root is no longer pending
    await env.conn.execute(
        "UPDATE steps SET status = 'ready' WHERE run_id = %s AND node_id = 'in'", (second,)
    )
    async with env.conn.transaction():
        messages, left = await bulk.start_unstarted_runs(env.conn, [first, second], ("in",))
    assert [m.run_id for m in messages] == [first] and [str(r) for r in left] == [second]
