"""The worker's line of steps waiting for a provider permit (`providers.permits.Gate`).

The database side is modelled by a capacity counter that admits a line in order until it is full
(what `provider_acquire_many` does). Checked: first come, first served; the head asks for the
whole line at once; a release wakes the head only, so the number of asks grows with the releases,
not with releases x waiters; a step that waits longer than its wait gets the refusal (to be
parked) and leaves the line; a line whose head leaves is taken over by the next; a step asking
again (woken from a park, retried) lines up ahead of the first attempts; steps arriving while an
ask is in flight line up behind it and are admitted together; calls reported admitted by the
provider (slow start) are reported by the next ask, at once when steps wait, and counted once.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from flowstudio.providers import permits
from flowstudio.providers.permits import Call, Gate, Waiter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Capacity:
    def __init__(self, free: int) -> None:
        self.free = free
        self.asks = 0
        self.admitted: list[int] = []  # what each ask reported admitted
        self.granted: list[int] = []

    async def ask(self, line: list[Waiter], releases: int = 0, admitted: int = 0) -> list[str]:
        self.asks += 1
        self.admitted.append(admitted)
        await anyio.lowlevel.checkpoint()
        out = []
        for w in line:
            if self.free > 0:
                self.free -= 1
                self.granted.append(w.step_id)
                out.append("ok")
            else:
                out.append("concurrency")
        return out


class Line:
    """A gate, its capacity, and the verdict each step got (by step id)."""

    def __init__(self, free: int) -> None:
        self.gate, self.cap = Gate(), Capacity(free)
        self.got: dict[int, str] = {}

    async def step(self, i: int, wait: float = 30.0) -> None:
        self.got[i] = await self.gate.acquire(Waiter(i, 1, 10), self.cap.ask, wait)

    async def line_up(self, tg: anyio.abc.TaskGroup, n: int) -> None:
        for i in range(n):
            tg.start_soon(self.step, i)
            await anyio.lowlevel.checkpoint()  # they line up in this order

    async def until(self, n: int) -> None:
        while len(self.got) < n:  # noqa: ASYNC110 -- a test watching a plain dict
            await anyio.sleep(0.001)


async def test_a_line_is_served_in_order_and_only_the_head_is_woken() -> None:
    line = Line(2)
    gate, cap = line.gate, line.cap
    async with anyio.create_task_group() as tg:
        await line.line_up(tg, 60)
        await line.until(2)
        for _ in range(58):  # one release at a time: each frees one permit and wakes the head
            cap.free += 1
            gate.notify()
            assert not any(w.wake.is_set() for w in list(gate.queue)[1:])  # the head only
            await line.until(len(line.got) + 1)
    assert line.got == {i: "ok" for i in range(60)}
    assert cap.granted == list(range(60))  # first come, first served
    assert cap.asks <= 2 * 60 + 5, cap.asks  # not releases x waiters (58 x 60)
    assert not gate.queue


async def test_a_burst_of_releases_is_admitted_in_one_ask() -> None:
    line = Line(0)
    async with anyio.create_task_group() as tg:
        await line.line_up(tg, 20)
        await anyio.sleep(0.01)
        asks = line.cap.asks
        line.cap.free = 20
        line.gate.notify()
    assert line.got == {i: "ok" for i in range(20)}
    assert line.cap.asks == asks + 1


async def test_steps_arriving_while_an_ask_is_in_flight_line_up_behind_it() -> None:
    """A batch's first LLM steps arrive together with room for all of them: the first asks at
    once, the others line up behind its ask (not one statement each, queued for the provider
    row's lock) and are admitted by the head's ask for the whole line."""
    line = Line(40)
    async with anyio.create_task_group() as tg:
        for i in range(33):
            tg.start_soon(line.step, i)
    assert line.got == {i: "ok" for i in range(33)}
    assert line.cap.granted == list(range(33))
    assert line.cap.asks == 2, line.cap.asks


async def test_waiting_longer_than_the_wait_gets_the_refusal_and_leaves_the_line() -> None:
    line = Line(0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(line.step, 0, 0.05)  # the head gives up first
        await anyio.lowlevel.checkpoint()
        tg.start_soon(line.step, 1, 30.0)
        await anyio.sleep(0.2)
        assert line.got == {0: "concurrency"} and [w.step_id for w in line.gate.queue] == [1]
        line.cap.free = 1
        line.gate.notify()  # the new head asks
    assert line.got == {0: "concurrency", 1: "ok"} and not line.gate.queue


async def test_a_step_asking_again_lines_up_ahead_of_first_attempts() -> None:
    """A step woken from a park (or retried) waited before every first attempt in line: it goes
    ahead of them, behind the steps that were asking again before it."""
    line = Line(0)
    order: list[int] = []

    async def again(i: int) -> None:
        await line.gate.acquire(Waiter(i, 2, 10, again=True), line.cap.ask, 30.0)
        order.append(i)

    async with anyio.create_task_group() as tg:
        await line.line_up(tg, 5)  # first attempts 0..4
        await anyio.sleep(0.01)
        for i in (100, 101):
            tg.start_soon(again, i)
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.01)
        assert [w.step_id for w in line.gate.queue] == [100, 101, 0, 1, 2, 3, 4]
        line.cap.free = 7
        line.gate.notify()
    assert line.cap.granted == [100, 101, 0, 1, 2, 3, 4]


async def test_a_release_asks_for_the_head_of_the_line_in_its_own_round_trip() -> None:
    """The freed permit goes to the head through the release's own ask (no wake-up and second
    ask first); with nobody waiting the release asks for nothing."""
    line = Line(0)
    released: list[int] = []

    async def release(waiting: list[Waiter], releases: int, admitted: int) -> list[str]:
        released.append(len(waiting))
        line.cap.free += 1
        return await line.cap.ask(waiting) if waiting else []

    await line.gate.release(release)
    assert released == [0]
    line.cap.free = 0
    async with anyio.create_task_group() as tg:
        await line.line_up(tg, 3)
        await anyio.sleep(0.01)
        asks = line.cap.asks
        await line.gate.release(release)
        await line.until(1)
        assert line.got == {0: "ok"} and line.cap.asks == asks + 1  # the release's ask only
        assert [w.step_id for w in line.gate.queue] == [1, 2]
        await line.gate.release(release)
        await line.gate.release(release)
    assert line.got == {0: "ok", 1: "ok", 2: "ok"} and line.cap.granted == [0, 1, 2]


class SlowStart:
    """The database in slow start: at most 2 grants per release an ask answers for (2 for one
    answering for none); each release frees one permit and raises the limit by one (what
    `provider_release` and `provider_acquire_many` do)."""

    def __init__(self, in_flight: int) -> None:
        self.limit = self.flying = in_flight
        self.asks = 0

    async def ask(
        self, line: list[Waiter], releases: int, admitted: int = 0, release: bool = False
    ) -> list[str]:
        await anyio.sleep(0.002)  # a round trip: releases of a burst overlap it
        self.asks += bool(line)
        if release:
            self.flying, self.limit = self.flying - 1, self.limit + 1
        out = []
        for _ in line:
            room = self.flying < self.limit and out.count("ok") < 2 * max(1, releases)
            self.flying += room
            out.append("ok" if room else "concurrency")
        return out


async def test_a_burst_of_releases_in_slow_start_fills_the_doubled_limit() -> None:
    """32 calls end together: every release earns its 2 grants, including the releases made while
    an ask for the line was in flight (the next ask answers for all of them at once): the line
    reaches the doubled limit, 64, in line order, in a few round trips, instead of a few permits
    trickling in per poll or one round trip per pair."""
    gate, db = Gate(), SlowStart(32)
    got: list[int] = []

    async def step(i: int) -> None:
        if await gate.acquire(Waiter(i, 1, 10), db.ask, 30.0) == "ok":
            got.append(i)

    async def release() -> None:
        await gate.release(lambda line, releases, _: db.ask(line, releases, release=True))

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(step, i)
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.02)
        assert not got and db.flying == 32
        line = [w.step_id for w in gate.queue]  # (in the order their first refusals came back)
        asks = db.asks
        for _ in range(32):
            tg.start_soon(release)
        with anyio.fail_after(5):  # a bound against hanging, not a timing assertion
            while db.flying < 64:  # noqa: ASYNC110 -- a test watching a plain counter
                await anyio.sleep(0.001)
            while len(got) < 64:  # noqa: ASYNC110 -- the last granted steps return
                await anyio.sleep(0.001)
        assert db.limit == 64 and sorted(got) == sorted(line[:64])  # first come, first served
        # the first release's ask, then one answering for the 31 made meanwhile (was 16 asks)
        assert db.asks - asks <= 4, db.asks - asks
        tg.cancel_scope.cancel()


async def test_an_admitted_call_is_reported_by_an_ask_at_once_and_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In slow start, a call still out after PROVIDER_ACCEPT_AFTER_SECONDS was admitted: the head
    of the line asks at once (no poll), reporting it; its release then says 'done' (`settle`).
    A call that ended before any ask reported it is not reported later (its release counts it),
    and once the provider is out of slow start nothing is reported."""
    monkeypatch.setattr(permits, "POLL_SECONDS", 60.0)  # only the report can wake the head
    line = Line(0)
    gate, cap = line.gate, line.cap
    reported, ended_first, late = Call("p"), Call("p"), Call("p")
    async with anyio.create_task_group() as tg:
        await line.line_up(tg, 1)
        await anyio.sleep(0.01)  # refused: it polls in a minute
        asks = cap.asks
        gate.admit(ended_first)
        assert gate.settle(ended_first) is False  # ended before an ask: 'ok', counted there
        cap.free = 1
        gate.admit(reported)
        with anyio.fail_after(10):  # a bound against a hang (the poll), not a timing check
            await line.until(1)
    assert line.got == {0: "ok"} and cap.asks == asks + 1 and cap.admitted[-1] == 1
    assert gate.settle(reported) is True and not gate.admitted
    gate.learn(False)  # an answer said slow start is over
    gate.admit(late)
    assert not gate.admitted and gate.settle(late) is False


def test_a_probe_is_asked_for_only_while_the_line_outlasts_its_refusal() -> None:
    """`Gate.may_probe`: a probe refused costs its step the Retry-After and a call; the steps
    lined up here drain in about len(line) / calls out call lengths (plus the calls out)."""
    gate = Gate()
    assert gate.may_probe()  # no call measured yet (slow start)
    gate.calls_out = 32
    gate.call_ended(0.5, None)  # a 0.5 s call
    gate.call_ended(None, 1.0)  # a 429 said Retry-After: 1
    assert (gate.calls_out, gate.call_seconds, gate.retry_after) == (30, 0.5, 1.0)
    gate.queue.extend(Waiter(i, 1, 10) for i in range(90))  # 3 rounds: 2 s > 1 + 0.5 s
    assert gate.may_probe()
    for _ in range(60):  # 1 round: 1 s < 1.5 s, the batch's end
        gate.queue.pop()
    assert not gate.may_probe()


async def test_reports_of_an_ask_that_failed_are_made_again_by_the_next() -> None:
    """An ask that raises (a lost connection) reported nothing: its admitted calls still out go
    back to be reported by the next ask, and their releases will count them ('ok')."""
    gate = Gate()
    out, ended = Call("p"), Call("p")
    gate.admit(out)
    gate.admit(ended)

    async def broken(line: list[Waiter], releases: int, admitted: int) -> list[str]:
        ended.ended = True  # this one ends while the ask is in flight
        raise ConnectionError("server closed the connection")

    with pytest.raises(ConnectionError):
        await gate._ask(broken, [], 0)
    assert gate.admitted == [out] and not out.reported
    cap = Capacity(1)
    assert await gate._ask(cap.ask, [], 0) == [] and cap.admitted == [1] and out.reported
