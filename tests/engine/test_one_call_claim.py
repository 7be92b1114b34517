"""A published step's one-call claim (migration 0028) writes exactly what the two-message claim writes.

Two identical runs on one database are driven to the same point, then the same step is claimed in
each: through the general path (run transaction: lock, fenced move, flush) and through
`step_claim`. Every row (steps with their lease and clocks' presence, events without their clock,
outbox, the run row with `started_at`'s presence) and the claimed step (ids aside) must be equal.
Cases: a run's first claim (queued -> running), a second published step of a running run (a
fan-out), a waiting run (woken). Then the attacks: a stale token, a duplicate message (the step
already claimed), a finished run: LostRace, nothing written; and a database without the function:
the general path claims. `pg_stat_user_functions` shows the function really ran.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flowstudio.engine.runtxn import LostRace
from tests.support.engine_env import EngineEnv
from tests.support.flows import chain, edge, flow_def, node

pytestmark = pytest.mark.anyio

CHAIN = chain(("a", "noop", {}))
FAN = flow_def(
    [node("in", "input"), node("a", "noop"), node("b", "noop"), node("out", "output")],
    [edge("in", "a"), edge("in", "b"), edge("a", "out"), edge("b", "out")],
)


async def claims_called(env: EngineEnv) -> int:
    await env.conn.execute("SELECT pg_stat_force_next_flush()")
    cur = await env.conn.execute(
        "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_user_functions"
        " WHERE funcname = 'step_claim'"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def run_picture(env: EngineEnv, rid: str) -> Any:
    run = await env.run(rid)
    return await env.picture(rid), run["started_at"] is not None


def described(step: Any) -> dict[str, Any]:
    fields = dataclasses.asdict(step)
    del fields["step_id"], fields["run_id"], fields["flow_id"]
    return fields


async def to_fan_out(env: EngineEnv, flow: dict[str, Any], *, one_call: bool) -> str:
    """A FAN run whose `in` succeeded (a and b ready, both published)."""
    rid = await env.start(flow, {"x": 1})
    step = await env.claim(rid, "in", one_call=one_call)
    await env.commit(step, {"v": 1}, eager=False)
    return rid


@pytest.mark.parametrize("case", ["first-claim", "fan-out", "waiting-run"])
async def test_one_call_claim_writes_what_the_two_messages_write(env: EngineEnv, case: str) -> None:
    await env.conn.execute("SET track_functions = 'pl'")
    pictures, steps = [], []
    for one_call in (False, True):
        before = await claims_called(env)
        if case == "first-claim":
            rid = await env.start(CHAIN, {"x": 1})
            node_id = "in"
        else:
            rid = await to_fan_out(env, FAN, one_call=False)
            node_id = "b"
            if case == "waiting-run":  # as if only a durable wait had been live
                await env.conn.execute("UPDATE runs SET status = 'waiting' WHERE id = %s", (rid,))
        step = await env.claim(rid, node_id, one_call=one_call)
        assert await claims_called(env) == before + int(one_call)
        steps.append(described(step))
        pictures.append(await run_picture(env, rid))
        if case != "waiting-run":  # (its waiting was written behind the log's back)
            env.check_log(rid)
    assert steps[1] == steps[0]
    assert pictures[1] == pictures[0]
    assert (await env.run(rid))["status"] == "running"


async def test_a_stale_or_duplicate_claim_and_a_finished_run_claim_nothing(
    env: EngineEnv,
) -> None:
    rid = await to_fan_out(env, FAN, one_call=True)
    before = await run_picture(env, rid)
    with pytest.raises(LostRace):  # a token that is not the step's attempt
        await env.claim(rid, "a", token=(await env.step(rid, "a"))["attempt"] + 1)
    assert await run_picture(env, rid) == before
    await env.claim(rid, "a")
    claimed = await run_picture(env, rid)
    with pytest.raises(LostRace):  # the same message again (redelivered)
        await env.claim(rid, "a", token=0)
    assert await run_picture(env, rid) == claimed
    env.check_log(rid)
    # a finished run claims nothing, even a ready step left behind (written behind the log's back)
    await env.conn.execute("UPDATE runs SET status = 'succeeded' WHERE id = %s", (rid,))
    ended = await run_picture(env, rid)
    with pytest.raises(LostRace):
        await env.claim(rid, "b", one_call=True)
    assert await run_picture(env, rid) == ended and (await env.step(rid, "b"))["status"] == "ready"


async def test_without_the_function_the_general_path_claims(env: EngineEnv) -> None:
    await env.conn.execute("DROP FUNCTION step_claim")
    rid = await env.start(CHAIN, {"x": 1})
    step = await env.claim(rid, "in", one_call=True)
    assert step.node_id == "in" and (await env.run(rid))["status"] == "running"
    env.check_log(rid)
