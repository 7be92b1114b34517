"""`store.locks.wake_on_notify` on a real PostgreSQL: the batch dispatcher's and the PostgreSQL
queue's wake-up. A NOTIFY on the channel reaches `wake` with its payload, one sent inside a
transaction (as `engine.batches.load_batch` sends its batch's) is heard only once it commits, and a
listener whose
connection is killed (pg_terminate_backend) reconnects and wakes once (`wake(None)`: whatever was
sent while nobody listened), then hears new notifications again.
"""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest

from flowstudio.store import locks

pytestmark = pytest.mark.anyio
CHANNEL = "fs_test_wake"
NAME = "flowstudio-test-wake"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def until(heard: list[str | None], n: int) -> None:
    with anyio.fail_after(20):  # a hang guard, not a performance claim
        while len(heard) < n:  # noqa: ASYNC110 -- a test watching a plain list
            await anyio.sleep(0.01)


async def test_notifications_wake_the_listener_and_it_survives_a_killed_connection(
    database_url: str,
) -> None:
    heard: list[str | None] = []
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(locks.wake_on_notify, database_url, CHANNEL, heard.append, NAME)
        await until(heard, 1)
        assert heard == [None]  # connected: one wake for whatever came before

        await locks.notify(conn, CHANNEL, "b1")
        await until(heard, 2)
        assert heard[-1] == "b1"

        async with conn.transaction():  # heard at COMMIT, not before
            await locks.notify(conn, CHANNEL, "b2")
            await anyio.sleep(0.3)
            assert heard[-1] == "b1"
        await until(heard, 3)
        assert heard[-1] == "b2"

        cur = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (NAME,),
        )
        killed: list[Any] = await cur.fetchall()
        assert killed == [(True,)]
        await until(heard, 4)
        assert heard[-1] is None  # reconnected
        await locks.notify(conn, CHANNEL, "b3")
        await until(heard, 5)
        assert heard[-1] == "b3"
        tg.cancel_scope.cancel()
