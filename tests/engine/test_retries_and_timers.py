"""Durable timers through the engine's functions: retry backoff, delay waits, signals.

A failed attempt with attempts left parks the step in `retrying` with a due time from the node's
retry policy (initial * backoff^(attempt-1), capped); the orchestrator's timer sweep readies it only
once due, with a fresh message whose token is the attempt count. Time is moved by setting the due
time into the past (`env.make_due`), never by sleeping: the backoff windows below are wide.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.support.engine_env import EngineEnv
from tests.support.flows import chain

pytestmark = pytest.mark.anyio

RETRY = {"max_attempts": 3, "initial_interval": 1000, "backoff": 2, "max_interval": 1500}
FLAKY = chain(("f", "noop", {}), ("g", "noop", {}), retry={"f": {"retry": RETRY}})


async def due_in(env: EngineEnv, due_at: datetime) -> float:
    cur = await env.conn.execute("SELECT %s::timestamptz - now() AS left", (due_at,))
    row = await cur.fetchone()
    assert row is not None
    left: timedelta = row["left"]
    return left.total_seconds()


async def test_a_retryable_failure_waits_its_backoff_then_runs_again(env: EngineEnv) -> None:
    rid = await env.start(FLAKY)
    await env.run_node(rid, "in")
    first = await env.claim(rid, "f")
    assert await env.fail(first, "flaky") == "retrying"
    step = await env.step(rid, "f")
    assert step["status"] == "retrying" and step["error"]["attempt"] == 1
    assert 1000 - 60 < await due_in(env, step["due_at"]) <= 1000  # initial_interval
    assert (await env.run(rid))["status"] == "running"

    assert await env.fire_timers() == 0  # not due yet: nothing moves
    assert (await env.step(rid, "f"))["status"] == "retrying"
    await env.make_due(rid, "f")
    assert await env.fire_timers() == 1
    assert (await env.step(rid, "f"))["status"] == "ready"
    assert (await env.outbox(rid))[-1] == (first.step_id, 1)  # the new message: token = attempt

    second = await env.claim(rid, "f", token=1)
    assert second.attempt == 2
    assert await env.fail(second, "flaky again") == "retrying"
    # 1000 * 2^1 = 2000, capped by max_interval
    assert 1500 - 60 < await due_in(env, (await env.step(rid, "f"))["due_at"]) <= 1500
    await env.make_due(rid, "f")
    await env.fire_timers()
    third = await env.claim(rid, "f", token=2)
    await env.succeed(third, {"ok": True})
    assert (await env.statuses(rid))["g"] == "ready"
    env.check_log(rid)


async def test_the_last_attempt_fails_the_run_and_cancels_what_is_left(env: EngineEnv) -> None:
    retry = {"f": {"retry": {**RETRY, "max_attempts": 2}}}
    rid = await env.start(chain(("f", "noop", {}), ("g", "noop", {}), retry=retry))
    await env.run_node(rid, "in")
    assert await env.fail(await env.claim(rid, "f")) == "retrying"
    await env.make_due(rid, "f")
    await env.fire_timers()
    assert await env.fail(await env.claim(rid, "f", token=1), "still broken") == "failed"
    run = await env.run(rid)
    assert run["status"] == "failed" and run["error"]["node_id"] == "f"
    assert await env.statuses(rid) == {
        "in": "succeeded",
        "f": "failed",
        "g": "cancelled",
        "out": "cancelled",
    }
    env.check_log(rid)


async def test_a_non_retryable_failure_fails_at_once_with_attempts_left(env: EngineEnv) -> None:
    rid = await env.start(FLAKY)
    await env.run_node(rid, "in")
    assert await env.fail(await env.claim(rid, "f"), "bad params", retryable=False) == "failed"
    assert (await env.run(rid))["status"] == "failed"
    assert (await env.step(rid, "f"))["attempt"] == 1
    env.check_log(rid)


async def test_a_delay_parks_the_run_until_its_timer_fires(env: EngineEnv) -> None:
    rid = await env.start(chain(("d", "delay", {"seconds": 100}), ("t", "noop", {})))
    await env.run_node(rid, "in")
    await env.wait(await env.claim(rid, "d"), seconds=100)
    assert (await env.step(rid, "d"))["status"] == "waiting"
    assert (await env.run(rid))["status"] == "waiting"
    assert await env.fire_timers() == 0
    await env.make_due(rid, "d")
    assert await env.fire_timers() == 1
    assert (await env.statuses(rid))["d"] == "succeeded"
    assert (await env.statuses(rid))["t"] == "ready"
    assert (await env.run(rid))["status"] == "running"
    env.check_log(rid)


SIGNAL = chain(("w", "wait_for_signal", {}), ("t", "noop", {}))


async def test_a_signal_completes_a_waiting_step_with_its_payload(env: EngineEnv) -> None:
    rid = await env.start(SIGNAL)
    await env.run_node(rid, "in")
    await env.wait(await env.claim(rid, "w"), seconds=None, signal=True)
    assert (await env.run(rid))["status"] == "waiting"
    assert await env.signal(rid, "w", {"by": "ada"}) is True
    w = await env.step(rid, "w")
    assert w["status"] == "succeeded" and w["output"] == {"by": "ada"}
    assert (await env.statuses(rid))["t"] == "ready"
    env.check_log(rid)


async def test_a_signal_that_comes_early_is_kept_until_the_step_waits(env: EngineEnv) -> None:
    rid = await env.start(SIGNAL)
    assert await env.signal(rid, "w", {"by": "early"}) is False  # buffered: nobody waits yet
    await env.run_node(rid, "in")
    await env.wait(await env.claim(rid, "w"), seconds=None, signal=True)
    w = await env.step(rid, "w")
    assert w["status"] == "succeeded" and w["output"] == {"by": "early"}
    env.check_log(rid)
