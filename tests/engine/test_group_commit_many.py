"""A group commit's chain members in ONE statement (`step_commit_success_many`, migration 0029).

The same group is committed twice on one database, once with one `step_commit_success` statement
per chain member and once with all of them in one `step_commit_success_many` call: four runs of a
chain (`in -> a -> out`) whose `in` succeeds with eager dispatch, one of them with a stale fence
(its lease was lost: a LostRace for it alone), plus a run's last step (`out`: it ends its run in
its call). Every written row (steps, payloads, events without their clock, outbox, run rows) and
every member's result must be equal between the two; the function is called once per member
either way (`track_functions`), and the many-call once per group. Then every run runs to its end
with a consistent event log. A database without the function (not migrated yet) costs one
failed group, then one statement per member.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flowstudio.engine import groupcommit
from flowstudio.engine.checkpoint import ClaimedStep, EagerClaim
from flowstudio.engine.groupcommit import Committed, GroupFailed, Success, commit_successes
from flowstudio.engine.runtxn import LostRace
from flowstudio.worker.context import context_nodes
from tests.support.engine_env import WORKER, EngineEnv
from tests.support.flows import chain

pytestmark = pytest.mark.anyio

CHAIN = chain(("a", "noop", {}))
EAGER = EagerClaim(30, context_nodes)


async def calls(env: EngineEnv, function: str) -> int:
    await env.conn.execute("SELECT pg_stat_force_next_flush()")
    cur = await env.conn.execute(
        "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_user_functions WHERE funcname = %s",
        (function,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def group(env: EngineEnv, flow_id: str) -> tuple[list[str], list[Success], ClaimedStep]:
    """Runs r0..r3 with `in` claimed (r1's member carries a lost lease: r1's real claim is
    returned too), r4 at its last step."""
    runs = [(await env.start_flow(flow_id, {"i": i})).id for i in range(5)]
    claimed = [await env.claim(rid, "in") for rid in runs[:4]]
    await env.run_node(runs[4], "in")
    await env.run_node(runs[4], "a")
    last = await env.claim(runs[4], "out")
    stale = dataclasses.replace(claimed[1], attempt=claimed[1].attempt + 1)
    steps = [claimed[0], stale, claimed[2], claimed[3], last]
    members = [Success(s, WORKER, {"i": i}, {"o": i}, eager=EAGER) for i, s in enumerate(steps)]
    return runs, members, claimed[1]


def described(result: Committed | LostRace | None, runs: list[str]) -> Any:
    if not isinstance(result, Committed):
        return type(result).__name__  # LostRace (its message names the step id)
    nxt = None
    if result.next is not None:
        s: ClaimedStep = result.next.step
        nxt = (runs.index(s.run_id), s.node_id, s.attempt, s.inputs, result.next.context_rows)
    return ([(runs.index(m.run_id), m.token) for m in result.outbox], nxt)


async def test_chain_members_in_one_statement_write_what_one_statement_each_writes(
    env: EngineEnv,
) -> None:
    await env.conn.execute("SET track_functions = 'pl'")
    flow_id = await env.create_flow(CHAIN)
    pictures = []
    for many in (False, True):
        runs, members, r1 = await group(env, flow_id)
        singles = await calls(env, "step_commit_success")
        manys = await calls(env, "step_commit_success_many")
        results = await commit_successes(env.conn, members, many=many)
        assert isinstance(results[1], LostRace)
        assert all(isinstance(r, Committed) for i, r in enumerate(results) if i != 1)
        assert await calls(env, "step_commit_success") == singles + 5  # one per member
        assert await calls(env, "step_commit_success_many") == manys + many
        assert (await env.run(runs[4]))["status"] == "succeeded"  # its last step ended it
        pictures.append(
            (
                [described(r, runs) for r in results],
                [repr(await env.picture(r)) for r in runs],
            )
        )
        for i, r in enumerate(results):  # every run runs to its end
            if isinstance(r, Committed) and r.next is not None:
                await env.succeed(r.next.step)
                await env.run_node(runs[i], "out")
        await env.succeed(r1)  # the lost member's step, with its real fence
        await env.run_node(runs[1], "a")
        await env.run_node(runs[1], "out")
        for rid in runs:
            assert (await env.run(rid))["status"] == "succeeded"
            env.check_log(rid)
    assert pictures[1] == pictures[0]


async def test_a_database_without_the_function_fails_one_group_then_one_statement_each(
    env: EngineEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker upgraded before `flowstudio migrate` ran: the first group fails as a whole (its
    members commit alone, as after any failed group) and the process stops asking for it."""
    monkeypatch.setitem(groupcommit._MANY, "enabled", True)
    await env.conn.execute("DROP FUNCTION step_commit_success_many(jsonb)")
    flow_id = await env.create_flow(CHAIN)
    _, members, _ = await group(env, flow_id)
    with pytest.raises(GroupFailed, match="step_commit_success_many"):
        await commit_successes(env.conn, members)
    assert groupcommit._MANY["enabled"] is False
    results = await commit_successes(env.conn, members)
    assert [type(r).__name__ for r in results] == ["Committed", "LostRace"] + ["Committed"] * 3
