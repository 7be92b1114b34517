"""How a provider's adaptive concurrency moves (migration 0022), through the store's own calls.

Real running steps (claimed with leases) hold permits taken by `store.providers.acquire_many`; releasing
them 'ok' or 'throttled' (a 429) drives `provider_release`. The scenario is a provider that takes 24
calls at once: slow start doubles, the first 429s remember what the provider held (the known cap:
our calls in flight when the refused one was admitted; the smallest of a burst) and end slow start
at it (migration 0025), a 429 well below the known cap (the provider lowered its limit)
backs off to 3/4, once, successes climb back by half the gap per round instead of one call per
round, a 429 at the known cap only confirms it (no new dip; the concurrency is the known cap
itself: the refused call was one too many), and past the known cap it probes slowly. A worker's line of waiting steps is admitted in one call, in
order. The once-a-second rule is stepped over by moving
`last_decrease_at` back, never by sleeping. Also: parked steps are woken while the provider is full
(migration 0023), a release hands its permit to a line in the same statement, and a process
registers a provider once however many steps ask together, and calls reported admitted clock slow
start (migration 0035).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from flowstudio.engine import parking
from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.providers import permits
from flowstudio.providers.permits import Park
from flowstudio.store import providers as store
from tests.support.engine_env import WORKER, EngineEnv
from tests.support.flows import chain

pytestmark = pytest.mark.anyio

ONE = chain(("c", "noop", {}))


async def running_steps(env: EngineEnv, n: int) -> list[ClaimedStep]:
    steps = []
    for _ in range(n):
        rid = await env.start(ONE)
        await env.run_node(rid, "in")
        steps.append(await env.claim(rid, "c"))
    return steps


async def provider(env: EngineEnv, pid: str) -> dict[str, Any]:
    cur = await env.conn.execute("SELECT *, xmin FROM providers WHERE id = %s", (pid,))
    row = await cur.fetchone()
    assert row is not None
    return row


async def acquire_all(env: EngineEnv, pid: str, steps: list[ClaimedStep]) -> list[str]:
    """One request per step, as steps that arrive one by one ask."""
    return [
        (await store.acquire_many(env.conn, pid, [(s.step_id, s.attempt, 10)]))[0] for s in steps
    ]


async def release(env: EngineEnv, steps: list[ClaimedStep], outcome: str) -> None:
    for s in steps:
        await store.release(env.conn, s.step_id, s.attempt, outcome, None)


async def a_second_later(env: EngineEnv, pid: str, effective: float | None = None) -> None:
    await env.conn.execute(
        """UPDATE providers SET last_decrease_at = last_decrease_at - interval '2 seconds',
                  effective_concurrency = coalesce(%s, effective_concurrency) WHERE id = %s""",
        (effective, pid),
    )


async def test_the_limit_found_by_a_429_is_climbed_back_to_and_then_kept(env: EngineEnv) -> None:
    steps = await running_steps(env, 32)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "", 256, 16)
    assert (await provider(env, pid))["effective_concurrency"] == 16

    # slow start: 16 in flight, the 17th waits; 16 successes double it
    assert await acquire_all(env, pid, steps[:17]) == ["ok"] * 16 + ["concurrency"]
    await release(env, steps[:16], "ok")
    assert (await provider(env, pid))["effective_concurrency"] == 32

    # 32 calls go out; the provider holds 24 and refuses the other 8, whose 429s come back last
    # first: the 32nd was admitted with 31 others in flight (b = 31): slow start ends at that, no
    # dip to 3/4 (slow start overshoots by design: b is the most the provider took); each later
    # 429 of the burst lowers the known cap and the concurrency further
    assert await acquire_all(env, pid, steps[:32]) == ["ok"] * 32
    await release(env, steps[31:32], "throttled")
    p = await provider(env, pid)
    assert (p["known_cap"], p["effective_concurrency"]) == (31, 31)
    await release(env, steps[24:31][::-1], "throttled")
    p = await provider(env, pid)
    assert (p["known_cap"], p["effective_concurrency"], p["throttled_total"]) == (24, 24, 8)

    # a second later the provider refuses the 21st of 24: well below the known cap (it lowered its
    # limit): back off to 3/4, once
    await a_second_later(env, pid, 24.0)
    await release(env, steps[20:21], "throttled")
    await release(env, steps[21:22], "throttled")
    p = await provider(env, pid)
    assert (p["known_cap"], p["effective_concurrency"]) == (20, 0.75 * 21)

    # one round of successes closes about half the gap (plain +1 per round would reach ~16.8)
    await release(env, [*steps[:16]], "ok")
    climbed = (await provider(env, pid))["effective_concurrency"]
    assert 17.3 < climbed < 20, climbed

    # probing one past the known cap: the 429 confirms it; no new dip to 3/4
    await release(env, steps[16:24], "ok")  # nothing is in flight now
    await a_second_later(env, pid, 21.0)
    assert await acquire_all(env, pid, steps[:21]) == ["ok"] * 21
    await release(env, steps[20:21], "throttled")
    p = await provider(env, pid)
    assert (p["known_cap"], p["effective_concurrency"]) == (20, 20)  # it took 20 (was 19)
    assert p["cap_confirmations"] == 1

    # at the known cap it probes, then faster: a quarter of a call per round, halved for each
    # probe in a row that found the same cap (here one: an eighth), then by the excess
    await release(env, steps[:20], "ok")
    await a_second_later(env, pid, 20.0)
    await acquire_all(env, pid, steps[:20])
    await release(env, steps[:20], "ok")
    probed = (await provider(env, pid))["effective_concurrency"]
    assert 20.1 < probed < 20.2, probed
    await acquire_all(env, pid, steps[:20])
    await release(env, steps[:20], "ok")
    probed = (await provider(env, pid))["effective_concurrency"]
    assert 20.25 < probed < 20.4, probed  # the excess grew with each success (x ~2.6)

    # the next probe past it is refused at 20 again: a second confirmation; one at 23 (the
    # provider raised its limit by more than 10%) starts counting again
    await a_second_later(env, pid, 21.0)
    assert await acquire_all(env, pid, steps[:21]) == ["ok"] * 21
    await release(env, steps[20:21], "throttled")
    p = await provider(env, pid)
    assert (p["known_cap"], p["effective_concurrency"], p["cap_confirmations"]) == (20, 20, 2)
    await release(env, steps[:20], "ok")
    await a_second_later(env, pid, 24.0)
    assert await acquire_all(env, pid, steps[:24]) == ["ok"] * 24
    await release(env, steps[23:24], "throttled")
    p = await provider(env, pid)
    assert (p["known_cap"], p["effective_concurrency"], p["cap_confirmations"]) == (23, 23, 0)


async def test_permits_of_dead_leases_do_not_count(env: EngineEnv) -> None:
    """The cheap row count is only a first look: at the limit, permits whose step lost its lease
    are not counted (a SIGKILLed worker's permits return without any release)."""
    steps = await running_steps(env, 5)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "k", 256, 4)
    assert await acquire_all(env, pid, steps) == ["ok"] * 4 + ["concurrency"]
    await env.conn.execute(
        "UPDATE steps SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)",
        ([s.step_id for s in steps[:2]],),
    )
    assert await acquire_all(env, pid, steps[4:]) == ["ok"]


async def test_a_line_of_steps_is_admitted_in_one_call_first_come_first_served(
    env: EngineEnv,
) -> None:
    """`acquire_many` (a worker's line of waiting steps): in order, until the first refusal."""
    steps = await running_steps(env, 6)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "line", 256, 3)
    line = [(s.step_id, s.attempt, 10) for s in steps]
    assert await store.acquire_many(env.conn, pid, line[:1]) == ["ok"]
    assert await store.acquire_many(env.conn, pid, line[1:5]) == [
        "ok",
        "ok",
        "concurrency",
        "concurrency",
    ]
    await env.conn.execute("UPDATE providers SET rpm = 4, effective_concurrency = 10")
    assert await store.acquire_many(env.conn, pid, line[3:]) == ["ok", "rpm", "rpm"]
    cur = await env.conn.execute(
        "SELECT requests FROM provider_usage WHERE provider_id = %s", (pid,)
    )
    assert sum(r["requests"] for r in await cur.fetchall()) == 4
    await env.conn.execute("DELETE FROM providers WHERE id = %s", (pid,))
    assert await store.acquire_many(env.conn, pid, line[:2]) == ["gone", "gone"]


async def test_slow_start_admits_two_per_release_then_whole_lines(env: EngineEnv) -> None:
    """Before its first 429 a provider's limit is unknown: past the window it started at
    (`start_window`, migration 0028: known to be safe, filled at once) a line is admitted two at
    a time per release the ask answers for (the releases that trigger the requests clock it; two
    for an ask answering for none), so an overshoot comes back as a few 429s, not a line's worth.
    Once a 429 found the limit, a line is admitted whole."""
    steps = await running_steps(env, 16)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "ss", 256, 4)
    line = [(s.step_id, s.attempt, 10) for s in steps]
    assert await store.acquire_many(env.conn, pid, line[:6]) == ["ok"] * 4 + ["concurrency"] * 2
    # the limit grew while the window was full: past it, two per release (here 3) and no more
    await env.conn.execute("UPDATE providers SET effective_concurrency = 20 WHERE id = %s", (pid,))
    assert (
        await store.acquire_many(env.conn, pid, line[4:12], 3) == ["ok"] * 6 + ["concurrency"] * 2
    )
    assert await store.acquire_many(env.conn, pid, line[10:12]) == ["ok"] * 2  # none: still two
    await env.conn.execute(
        "UPDATE providers SET last_decrease_at = now() - interval '1 hour', "
        "effective_concurrency = 16"
    )
    assert await store.acquire_many(env.conn, pid, line[12:]) == ["ok"] * 4


async def test_calls_reported_admitted_clock_slow_start_and_count_once(env: EngineEnv) -> None:
    """Migration 0035: an ask reporting k calls the provider admitted (unanswered a moment after
    they went out) raises a provider in slow start by k and grants 2 for each, as k releases
    would, a call length sooner; their releases say 'done' and add nothing more. Out of slow start
    a report changes nothing (the answer says so) and 'done' is 'ok' (the additive increase)."""
    steps = await running_steps(env, 12)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "acc", 256, 2)
    line = [(s.step_id, s.attempt, 10) for s in steps]
    first = await store.ask(env.conn, pid, line[:4])
    assert first == store.Answer(["ok"] * 2 + ["concurrency"] * 2, True)  # the start window
    # both calls still out: reported admitted, +2 (4), and 2 grants each (the window allows 2)
    assert await store.ask(env.conn, pid, line[2:6], 0, 2) == store.Answer(
        ["ok"] * 2 + ["concurrency"] * 2, True
    )
    assert (await provider(env, pid))["effective_concurrency"] == 4
    await release(env, steps[:2], "done")  # counted when reported: still 4, and 2 free
    assert (await provider(env, pid))["effective_concurrency"] == 4
    await release(env, steps[2:3], "ok")  # never reported: +1 at its release, as before
    assert (await provider(env, pid))["effective_concurrency"] == 5
    assert (await store.ask(env.conn, pid, line[6:7], 0, 1)).verdicts == ["ok"]  # +1: 6
    await release(env, steps[6:7], "failed")  # reported, then failed: its +1 is taken back
    assert (await provider(env, pid))["effective_concurrency"] == 5
    await env.conn.execute("UPDATE providers SET ceiling = 5 WHERE id = %s", (pid,))
    version = (await provider(env, pid))["xmin"]
    at_ceiling = await store.ask(env.conn, pid, [], 0, 3)  # nothing left to find: no write
    assert at_ceiling == store.Answer([], False)
    assert (await provider(env, pid))["xmin"] == version
    await env.conn.execute("UPDATE providers SET ceiling = 256 WHERE id = %s", (pid,))
    await env.conn.execute(  # a 429 ended slow start (an hour ago)
        "UPDATE providers SET last_decrease_at = now() - interval '1 hour', known_cap = 5, "
        "effective_concurrency = 5 WHERE id = %s",
        (pid,),
    )
    answer = await store.ask(env.conn, pid, line[6:8], 0, 3)
    assert answer == store.Answer(["ok"] * 2, False)
    assert (await provider(env, pid))["effective_concurrency"] == 5  # the report changed nothing
    await release(env, steps[3:4], "done")  # past the known cap: it probes, as an 'ok' would
    assert (await provider(env, pid))["effective_concurrency"] > 5


async def test_an_ask_that_forbids_probing_gets_no_permit_past_the_known_cap(
    env: EngineEnv,
) -> None:
    """Migration 0035: past the known cap a grant is a probe (a refusal costs its step the
    Retry-After); a worker whose line would not outlast that asks with `probe` false and gets
    nothing past the known cap, while the concurrency itself is left as it is."""
    steps = await running_steps(env, 6)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "probe", 256, 2)
    await env.conn.execute(
        "UPDATE providers SET last_decrease_at = now() - interval '1 hour', known_cap = 4, "
        "effective_concurrency = 6 WHERE id = %s",
        (pid,),
    )
    line = [(s.step_id, s.attempt, 10) for s in steps]
    assert await store.ask(env.conn, pid, line[:4], probe=False) == store.Answer(["ok"] * 4, False)
    refused = await store.ask(env.conn, pid, line[4:], probe=False)
    assert refused == store.Answer(["concurrency"] * 2, False)
    assert await store.ask(env.conn, pid, line[4:]) == store.Answer(["ok"] * 2, False)  # probes
    assert (await provider(env, pid))["effective_concurrency"] == 6
    # successes past the cap with the window unused (4 of 6 held: probing forbidden) do not
    # raise it any further: one ask that may probe later gets no burst past the cap
    await release(env, steps[4:], "ok")  # the probes succeeded (the first in a full window)
    grown = (await provider(env, pid))["effective_concurrency"]
    assert grown > 6
    for _ in range(3):
        await release(env, steps[:1], "ok")
        assert await store.ask(env.conn, pid, line[:1], probe=False) == store.Answer(["ok"], False)
    assert (await provider(env, pid))["effective_concurrency"] == grown


async def test_parked_steps_are_woken_even_while_the_provider_is_full(env: EngineEnv) -> None:
    """A provider kept at its limit by lines of waiting steps never has a free slot: parked steps
    (a 429's) are woken all the same, oldest first, up to the limit's worth waiting for a permit
    (the worker lines them up ahead of first attempts); they no longer starve until the lines drain.
    """
    steps = await running_steps(env, 6)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "full", 256, 2)
    await env.conn.execute("UPDATE providers SET last_decrease_at = now() - interval '1 hour'")
    holding, parked = steps[:2], steps[2:]
    assert await acquire_all(env, pid, holding) == ["ok", "ok"]  # full from here on
    for s in parked:
        await parking.commit_park(env.conn, s, WORKER, Park(pid, 0.0, "throttled"))
    woken = await parking.wake_parked(env.conn)
    assert [m.step_id for m in woken] == [s.step_id for s in parked[:2]]  # the limit's worth
    assert await parking.wake_parked(env.conn) == []  # they have not taken their permit yet
    again = await env.claim(parked[0].run_id, "c", token=parked[0].attempt)
    await release(env, holding[:1], "ok")
    assert await acquire_all(env, pid, [again]) == ["ok"]  # its parked row goes with the grant
    assert [m.step_id for m in await parking.wake_parked(env.conn)] == [parked[2].step_id]


async def test_the_timer_loop_wakes_when_a_parked_steps_retry_after_ends(env: EngineEnv) -> None:
    """The orchestrator sleeps until the next timer, and a parked step's Retry-After is one (it was
    not: a 429'd step was woken up to a 0.25 s poll late, the last item of a batch with it); a
    parked step already due but not woken (its provider has its limit's worth woken) is left to the
    poll, or the loop would spin."""
    steps = await running_steps(env, 2)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "timer", 256, 1)
    assert await env.next_timer_in() is None
    await parking.commit_park(env.conn, steps[0], WORKER, Park(pid, 0.0, "concurrency"))
    assert await env.next_timer_in() is None  # due now: the next pass wakes it, or the poll after
    await parking.commit_park(env.conn, steps[1], WORKER, Park(pid, 30.0, "throttled"))
    wait = await env.next_timer_in()
    assert wait is not None and 20 < wait <= 30, wait


async def test_a_release_hands_its_permit_to_the_line_in_the_same_statement(
    env: EngineEnv,
) -> None:
    """`release_then_ask`: the line asked for in the release's statement sees the permit
    freed (one round trip from one call's end to the next call's permit)."""
    steps = await running_steps(env, 4)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "handoff", 256, 2)
    await env.conn.execute("UPDATE providers SET last_decrease_at = now() - interval '1 hour'")
    assert await acquire_all(env, pid, steps[:2]) == ["ok", "ok"]
    line = [(s.step_id, s.attempt, 10) for s in steps[2:]]
    first = steps[0]
    answer = await store.release_then_ask(
        env.conn, (first.step_id, first.attempt, "ok", 12), pid, line
    )
    assert answer.verdicts == ["ok", "concurrency"]  # the freed permit, and no more
    cur = await env.conn.execute(
        "SELECT step_id FROM provider_permits WHERE provider_id = %s ORDER BY step_id", (pid,)
    )
    assert [r["step_id"] for r in await cur.fetchall()] == [steps[1].step_id, steps[2].step_id]
    emptied = await store.release_then_ask(
        env.conn, (steps[1].step_id, steps[1].attempt, "ok", None), pid, []
    )
    assert emptied.verdicts == []
    assert await acquire_all(env, pid, steps[3:]) == ["ok"]


async def test_a_process_registers_a_provider_once_however_many_steps_ask_together(
    env: EngineEnv,
) -> None:
    """The first LLM steps of a batch arrive together: one of them looks the provider up (or
    registers it), the others wait for its answer instead of each asking the database."""
    checkouts: list[int] = []

    class CountingPool:  # the worker's pool interface, over the test's real connection
        @asynccontextmanager
        async def connection(self) -> AsyncIterator[Any]:
            checkouts.append(1)
            await anyio.sleep(0.01)  # a registration that takes a while: the others line up
            yield env.conn

    settings = SimpleNamespace(provider_default_max_concurrency=256, provider_initial_concurrency=8)
    url = f"http://127.0.0.1:9/v1/{uuid.uuid4().hex}"
    ids: list[str] = []

    async def ask() -> None:
        ids.append(await permits._provider_id(CountingPool(), settings, url, "fp"))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(ask)
    assert len(set(ids)) == 1 and len(ids) == 50
    assert len(checkouts) == 1


async def test_the_gate_on_the_real_functions_refills_a_slow_start_burst_in_order(
    env: EngineEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`providers.permits.Gate` over the real SQL (one connection: one round trip at a time): 4
    calls in flight in slow start end together; each release raises the limit by one and hands
    its permit on in its own statement, the releases made meanwhile are owed an ask, and the 8
    waiting steps all get a permit (the doubled limit), first come, first served. No timer may
    rescue a lost grant here: the line's head polls once a minute and a step waits as long (the
    version without owed asks hung here until its waits ran out)."""
    monkeypatch.setattr(permits, "POLL_SECONDS", 60.0)
    steps = await running_steps(env, 12)
    pid = await store.ensure_provider(env.conn, "http://127.0.0.1:9/v1", "gate", 256, 4)
    holding, waiting = steps[:4], steps[4:]
    assert await acquire_all(env, pid, holding) == ["ok"] * 4
    gate = permits.Gate()
    granted: list[int] = []

    async def ask(line: list[permits.Waiter], releases: int, admitted: int) -> list[str]:
        waiting_line = [(w.step_id, w.attempt, 10) for w in line]
        return await store.acquire_many(env.conn, pid, waiting_line, releases)

    async def wait(step: ClaimedStep) -> None:
        me = permits.Waiter(step.step_id, step.attempt, 10)
        if await gate.acquire(me, ask, 60.0) == "ok":
            granted.append(step.step_id)

    async def finish(step: ClaimedStep) -> None:
        async def release(line: list[permits.Waiter], releases: int, admitted: int) -> list[str]:
            waiting_line = [(w.step_id, w.attempt, 10) for w in line]
            permit = (step.step_id, step.attempt, "ok", 10)
            answer = await store.release_then_ask(env.conn, permit, pid, waiting_line, releases)
            return answer.verdicts

        await gate.release(release)

    with anyio.fail_after(20):  # a bound against a hang (this takes ~0.1 s), not a timing check
        async with anyio.create_task_group() as tg:
            for s in waiting:
                tg.start_soon(wait, s)
                await anyio.sleep(0.01)  # each is refused and lines up, in this order
            assert [w.step_id for w in gate.queue] == [s.step_id for s in waiting]
            for s in holding:
                tg.start_soon(finish, s)
    assert granted == [s.step_id for s in waiting]
    row = await provider(env, pid)
    assert row["effective_concurrency"] == 8
    cur = await env.conn.execute(
        "SELECT step_id FROM provider_permits WHERE provider_id = %s ORDER BY step_id", (pid,)
    )
    assert [r["step_id"] for r in await cur.fetchall()] == [s.step_id for s in waiting]
