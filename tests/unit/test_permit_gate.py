"""The worker's line of steps waiting for a provider permit (`providers.permits.Gate`).

The database side is modelled by a capacity counter that admits a line in order until it is full
(what `provider_acquire_many` does). Checked: first come, first served; the head asks for the
whole line at once; a release wakes the head only, so the number of asks grows with the releases,
not with releases x waiters; a step that waits longer than its wait gets the refusal (to be
parked) and leaves the line; a line whose head leaves is taken over by the next.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from flowstudio.providers.permits import Gate, Waiter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Capacity:
    def __init__(self, free: int) -> None:
        self.free = free
        self.asks = 0
        self.granted: list[int] = []

    async def ask(self, line: list[Waiter]) -> list[str]:
        self.asks += 1
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


async def test_a_line_is_served_in_order_and_only_the_head_is_woken() -> None:
    gate, cap = Gate(), Capacity(2)
    got: dict[int, str] = {}

    async def step(i: int) -> None:
        got[i] = await gate.acquire(Waiter(i, 1, 10), cap.ask, 30.0)

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(step, i)
            await anyio.lowlevel.checkpoint()  # they line up in this order
        while len(got) < 2:  # noqa: ASYNC110 -- a test watching a plain dict
            await anyio.sleep(0.001)
        for _ in range(58):  # one release at a time: each frees one permit and wakes the head
            cap.free += 1
            gate.notify()
            assert not any(w.wake.is_set() for w in list(gate.queue)[1:])  # the head only
            before = len(got)
            while len(got) == before:  # noqa: ASYNC110 -- a test watching a plain dict
                await anyio.sleep(0.001)
    assert got == {i: "ok" for i in range(60)}
    assert cap.granted == list(range(60))  # first come, first served
    assert cap.asks <= 2 * 60 + 5, cap.asks  # not releases x waiters (58 x 60)
    assert not gate.queue


async def test_a_burst_of_releases_is_admitted_in_one_ask() -> None:
    gate, cap = Gate(), Capacity(0)
    got: dict[int, str] = {}

    async def step(i: int) -> None:
        got[i] = await gate.acquire(Waiter(i, 1, 10), cap.ask, 30.0)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(step, i)
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.01)
        asks = cap.asks
        cap.free = 20
        gate.notify()
    assert got == {i: "ok" for i in range(20)}
    assert cap.asks == asks + 1


async def test_waiting_longer_than_the_wait_gets_the_refusal_and_leaves_the_line() -> None:
    gate, cap = Gate(), Capacity(0)
    got: dict[int, str] = {}

    async def step(i: int, wait: float) -> None:
        got[i] = await gate.acquire(Waiter(i, 1, 10), cap.ask, wait)

    async with anyio.create_task_group() as tg:
        tg.start_soon(step, 0, 0.05)  # the head gives up first
        await anyio.lowlevel.checkpoint()
        tg.start_soon(step, 1, 30.0)
        await anyio.sleep(0.2)
        assert got == {0: "concurrency"} and [w.step_id for w in gate.queue] == [1]
        cap.free = 1
        gate.notify()  # the new head asks
    assert got == {0: "concurrency", 1: "ok"} and not gate.queue
