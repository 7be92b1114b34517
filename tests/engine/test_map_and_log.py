"""Fan-out and the event log through the engine's functions.

A map step that expands parks in `waiting` with one step per item, at most `concurrency` of them live;
each item's commit readies the next; the last one finishes the map with the results in item order.
Fail-fast: a failed item fails the map and the run. The event log of a plain run is exactly each
step's pending -> ready -> running -> succeeded and the run's queued -> running -> succeeded, with
gapless sequence numbers.
"""

from __future__ import annotations

import pytest

from tests.support.engine_env import EngineEnv
from tests.support.flows import chain, map_flow

pytestmark = pytest.mark.anyio

BODY = {"type": "template", "params": {"template": "<{{ item }}>"}}


async def test_a_map_runs_its_items_within_its_concurrency_and_keeps_their_order(
    env: EngineEnv,
) -> None:
    rid = await env.start(map_flow(BODY, concurrency=2), {"xs": ["a", "b", "c"]})
    await env.run_node(rid, "in", {"xs": ["a", "b", "c"]})
    await env.expand(await env.claim(rid, "m"), ["a", "b", "c"])
    assert (await env.step(rid, "m"))["status"] == "waiting"
    assert await env.items(rid, "m") == ["ready", "ready", "pending"]
    assert (await env.run(rid))["status"] == "running"  # items live under the waiting map

    await env.succeed(await env.claim(rid, "m", item=2), {"text": "<b>"})  # out of order
    assert await env.items(rid, "m") == ["ready", "succeeded", "ready"]
    await env.succeed(await env.claim(rid, "m", item=3), {"text": "<c>"})
    await env.succeed(await env.claim(rid, "m", item=1), {"text": "<a>"})
    m = await env.step(rid, "m")
    assert m["status"] == "succeeded"
    assert m["output"] == [{"text": "<a>"}, {"text": "<b>"}, {"text": "<c>"}]
    assert (await env.statuses(rid))["out"] == "ready"
    env.check_log(rid)


async def test_a_failed_item_fails_the_map_and_the_run(env: EngineEnv) -> None:
    rid = await env.start(map_flow(BODY, concurrency=3), {"xs": [1, 2, 3]})
    await env.run_node(rid, "in")
    await env.expand(await env.claim(rid, "m"), [1, 2, 3])
    await env.fail(await env.claim(rid, "m", item=2), "bad item", retryable=False)
    assert (await env.run(rid))["status"] == "failed"
    assert (await env.step(rid, "m"))["status"] == "failed"
    assert await env.items(rid, "m") == ["cancelled", "failed", "cancelled"]
    env.check_log(rid)


async def test_the_event_log_of_a_plain_run_is_each_move_once_in_order(env: EngineEnv) -> None:
    rid = await env.start(chain(("a", "noop", {})))
    for nid in ("in", "a", "out"):
        await env.run_node(rid, nid, {"v": nid})
    events = await env.events(rid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (await env.run(rid))["event_seq"] == len(events)
    run_moves = [(e["from_status"], e["to_status"]) for e in events if e["kind"] == "run"]
    assert run_moves == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    for nid in ("in", "a", "out"):
        moves = [
            (e["from_status"], e["to_status"])
            for e in events
            if e["kind"] == "step" and e["node_id"] == nid
        ]
        assert moves == [("pending", "ready"), ("ready", "running"), ("running", "succeeded")]
    env.check_log(rid)
