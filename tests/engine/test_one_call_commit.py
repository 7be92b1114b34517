"""A chain step's one-call commit (migration 0027) writes exactly what the two-message path writes.

The same flows are driven twice on one database, step by step as a worker would (claim, succeed,
run the step the success claimed eagerly, ...): once with ONE_CALL_COMMIT on and once off. Every
row the checkpoint writes (step rows with their lease, timestamps' presence and payload; the event
log without its clock; outbox rows; the run row) and everything the commit hands back (the
messages to publish, the eagerly claimed step and its context rows) must be equal, step ids
replaced by node ids. The flows cover a chain, a fan-out (two successors: one claimed, one
published), a join and a condition (general path), a run's last step (the run ends in the call,
its outputs collected) and one that is not (another branch still live), with and without eager
dispatch. Then the
attacks on its guards: a stale fencing token, a run that is not `running`, and a plan the database
contradicts (a successor no longer pending), each leaving exactly one committed success behind;
and a database without the function (not migrated yet): every commit takes the general path.
`pg_stat_user_functions` shows the function really ran.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from flowstudio.engine.runtxn import LostRace
from tests.support.engine_env import EngineEnv
from tests.support.flows import branch_flow, chain, edge, flow_def, node

pytestmark = pytest.mark.anyio

CHAIN = chain(("a", "noop", {}), ("b", "noop", {}), ("d", "noop", {}))
FAN = flow_def(
    [
        node("in", "input"),
        node("s", "noop"),
        node("a", "noop"),
        node("b", "noop"),
        node("j", "merge"),
        node("out", "output"),
    ],
    [
        edge("in", "s"),
        edge("s", "a"),
        edge("s", "b"),
        edge("a", "j"),
        edge("b", "j"),
        edge("j", "out"),
    ],
)
TWO_OUTPUTS = flow_def(
    [
        node("in", "input"),
        node("a", "noop"),
        node("b", "noop"),
        node("out1", "output"),
        node("out2", "output"),
    ],
    [edge("in", "a"), edge("in", "b"), edge("a", "out1"), edge("b", "out2")],
)
BRANCHES = {"c": "true"}  # the condition `c` of branch_flow() takes its true side
TERMINAL = ("succeeded", "failed", "cancelled")


async def drive(env: EngineEnv, definition: dict[str, Any], *, one_call: bool, eager: bool) -> Any:
    """Run the flow to its end as a worker; returns (run id, what each commit handed back)."""
    rid = await env.start(definition, {"x": 1})
    handed: list[Any] = []
    while (await env.run(rid))["status"] not in TERMINAL:
        ready = sorted(n for n, status in (await env.statuses(rid)).items() if status == "ready")
        assert ready, f"run {rid} is stuck: {await env.statuses(rid)}"
        step: Any = await env.claim(rid, ready[0])
        while step is not None:
            outbox, nxt = await env.commit(
                step,
                {"from": step.node_id},
                branch=BRANCHES.get(step.node_id),
                eager=eager,
                one_call=one_call,
            )
            nodes = {s["id"]: n for n, s in (await env.steps(rid)).items()}
            handed.append((step.node_id, [(nodes[s], t) for s, t in outbox], described(nxt)))
            step = nxt.step if nxt is not None else None
    return rid, handed


def described(nxt: Any) -> Any:
    if nxt is None:
        return None
    fields = dataclasses.asdict(nxt.step)
    del fields["step_id"], fields["run_id"], fields["flow_id"]  # each drive has its own flow
    return fields, sorted(nxt.context_rows, key=lambda r: r["node_id"])


async def one_calls(env: EngineEnv) -> int:
    """How many times this session called `step_commit_success` (track_functions is on for it),
    whatever it answered."""
    await env.conn.execute("SELECT pg_stat_force_next_flush()")
    cur = await env.conn.execute(
        "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_user_functions"
        " WHERE funcname = 'step_commit_success'"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "via-outbox"])
@pytest.mark.parametrize(
    ("name", "definition", "chain_steps"),
    [
        ("chain", CHAIN, 5),
        ("fan-out-join", FAN, 4),
        ("branch", branch_flow(), 3),
        ("two-outputs", TWO_OUTPUTS, 5),
    ],
)
async def test_one_call_writes_what_the_two_messages_write(
    env: EngineEnv, name: str, definition: dict[str, Any], chain_steps: int, eager: bool
) -> None:
    await env.conn.execute("SET track_functions = 'pl'")
    before = await one_calls(env)
    two_rid, two_handed = await drive(env, definition, one_call=False, eager=eager)
    assert await one_calls(env) == before  # the general path never calls it
    one_rid, one_handed = await drive(env, definition, one_call=True, eager=eager)
    # the last step (no successor) ends its run in one call when nothing else is live:
    # chain: in, a, b, d, out; fan-out: in, s (two successors), j, out; branch: in, m, out (c
    # skips, hi joins); two outputs: in, a, b, out2, and out1's call, which found b still live,
    # wrote nothing and answered `general` (the general path committed it)
    assert await one_calls(env) == before + chain_steps
    assert one_handed == two_handed
    assert await env.picture(one_rid) == await env.picture(two_rid)
    assert (await env.run(one_rid))["status"] == "succeeded"
    env.check_log(one_rid)


async def test_a_stale_fencing_token_commits_nothing(env: EngineEnv) -> None:
    rid = await env.start(CHAIN)
    step = await env.claim(rid, "in")
    before = await env.picture(rid)
    stale = dataclasses.replace(step, attempt=step.attempt + 1)
    with pytest.raises(LostRace):
        await env.commit(stale, {"v": 1}, eager=True)
    with pytest.raises(LostRace):
        await env.commit(step, {"v": 1}, eager=True, worker="worker-b")  # not the lease owner
    assert await env.picture(rid) == before
    await env.commit(step, {"v": 1}, eager=True)
    assert (await env.statuses(rid))["a"] == "running"
    env.check_log(rid)


async def test_a_run_that_is_not_running_takes_the_general_path(env: EngineEnv) -> None:
    rid = await env.start(CHAIN)
    step = await env.claim(rid, "in")
    # as if only a durable wait had been live: the run is `waiting` while this step runs
    await env.conn.execute("UPDATE runs SET status = 'waiting' WHERE id = %s", (rid,))
    outbox, nxt = await env.commit(step, {"v": 1}, eager=True)
    assert nxt is not None and nxt.step.node_id == "a" and outbox == []
    assert (await env.run(rid))["status"] == "running"  # the general path woke it
    events = await env.events(rid)
    assert [(e["kind"], e["from_status"], e["to_status"]) for e in events][-4:] == [
        ("step", "running", "succeeded"),
        ("step", "pending", "ready"),
        ("run", "waiting", "running"),
        ("step", "ready", "running"),
    ]


async def test_a_plan_the_database_contradicts_rolls_back_and_takes_the_general_path(
    env: EngineEnv, caplog: pytest.LogCaptureFixture
) -> None:
    rid = await env.start(CHAIN)
    step = await env.claim(rid, "in")
    # the plan says `a` becomes ready, but it is no longer pending (cannot happen in the engine)
    await env.conn.execute(
        "UPDATE steps SET status = 'skipped' WHERE run_id = %s AND node_id = 'a'", (rid,)
    )
    with caplog.at_level(logging.ERROR, logger="flowstudio.engine.onecall"):
        outbox, nxt = await env.commit(step, {"v": 1}, eager=True)
    assert "refused its plan" in caplog.text
    assert nxt is None and outbox == []
    events = await env.events(rid)
    successes = [e for e in events if e["to_status"] == "succeeded" and e["kind"] == "step"]
    assert len(successes) == 1  # the call's own writes were rolled back; the general path's stay
    assert (await env.statuses(rid))["in"] == "succeeded"


async def test_a_database_without_the_function_commits_through_the_general_path(
    env: EngineEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker of this release on a database `flowstudio migrate` has not brought to 0027 yet."""
    await env.conn.execute("DROP FUNCTION step_commit_success")
    rid = await env.start(CHAIN)
    step: Any = await env.claim(rid, "in")
    with caplog.at_level(logging.WARNING, logger="flowstudio.engine.onecall"):
        while step is not None:
            _, nxt = await env.commit(step, {"from": step.node_id}, eager=True)
            step = nxt.step if nxt is not None else None
    assert "step_commit_success is missing" in caplog.text
    assert (await env.run(rid))["status"] == "succeeded"
    env.check_log(rid)
