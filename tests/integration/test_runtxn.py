"""`run_transaction` on a real PostgreSQL, pipelined (the default) and not (DB_PIPELINE=0).

The fast path sends `BEGIN; lock; first move` as one message and the flush with its COMMIT as another,
so its failure paths are tested here directly: a committed transaction writes the move, gapless events
and the outbox row; a missing run, an SQL error inside the pipelined first message, an exception from
the body and a cancellation all roll back completely and leave the connection idle and usable; inside
an outer transaction it is a savepoint that the outer rollback undoes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from flowstudio.engine.runtxn import LostRace, run_transaction
from flowstudio.store import db as dbmod
from tests.support.dbrows import insert_run
from tests.support.infra import private_database

AConn = psycopg.AsyncConnection[Any]
READY = ("s.node_id = ANY(%(nodes)s) AND s.item_index = 0", {"nodes": ["a"]})


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A database of this module's own: the committed rows here (a ready step of a flow with no
    nodes, its outbox row) must never reach the shared test stack's relay and workers."""
    with private_database("fs_runtxn") as url:
        yield url


@pytest.fixture(params=[True, False], ids=["pipelined", "one-by-one"])
def pipelined(request: pytest.FixtureRequest) -> Iterator[bool]:
    saved = dbmod._PIPELINE["enabled"]
    dbmod._PIPELINE["enabled"] = request.param
    yield request.param
    dbmod._PIPELINE["enabled"] = saved


def with_conn(database_url: str, body: Callable[[AConn], Awaitable[None]]) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            await body(conn)
            assert conn.info.transaction_status == TransactionStatus.IDLE
            cur = await conn.execute("SELECT 1 AS one")  # still usable
            assert await cur.fetchone() == {"one": 1}

    anyio.run(main)


def state(db: psycopg.Connection[Any], run: str) -> tuple[str, int, int, int]:
    (status,) = db.execute(
        "SELECT status FROM steps WHERE run_id = %s AND node_id = 'a'", (run,)
    ).fetchone()
    (seq,) = db.execute("SELECT event_seq FROM runs WHERE id = %s", (run,)).fetchone()
    (events,) = db.execute("SELECT count(*) FROM run_events WHERE run_id = %s", (run,)).fetchone()
    (outbox,) = db.execute("SELECT count(*) FROM outbox WHERE run_id = %s", (run,)).fetchone()
    return status, seq, events, outbox


def test_a_committed_transaction_writes_move_events_and_outbox(
    db: psycopg.Connection[Any], database_url: str, pipelined: bool
) -> None:
    run, steps = insert_run(db, ["a", "b"])

    async def body(conn: AConn) -> None:
        async with run_transaction(conn, run, defer_lock=True) as txn:
            moved, states = await txn.move_steps_reading_states("ready", *READY)
            assert [m["id"] for m in moved] == [steps["a"]]
            assert states["a"].status == "ready" and states["b"].status == "pending"
            txn.move_run("start", started_at=True)
        assert [m.step_id for m in txn.outbox] == [steps["a"]]

    with_conn(database_url, body)
    assert state(db, run) == ("ready", 2, 2, 1)
    seqs = db.execute("SELECT seq FROM run_events WHERE run_id = %s ORDER BY seq", (run,))
    assert [r[0] for r in seqs.fetchall()] == [1, 2]


def test_a_missing_run_is_a_lost_race_and_leaves_the_connection_clean(
    database_url: str, pipelined: bool
) -> None:
    async def body(conn: AConn) -> None:
        with pytest.raises(LostRace):
            async with run_transaction(
                conn, "00000000-0000-0000-0000-000000000000", defer_lock=True
            ) as txn:
                await txn.move_steps("ready", *READY)

    with_conn(database_url, body)


def test_an_sql_error_in_the_first_message_rolls_back(
    db: psycopg.Connection[Any], database_url: str, pipelined: bool
) -> None:
    run, _ = insert_run(db, ["a"])

    async def body(conn: AConn) -> None:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            async with run_transaction(conn, run, defer_lock=True) as txn:
                await txn.move_steps("ready", "s.item_index = %(bad)s::int", {"bad": "x"})

    with_conn(database_url, body)
    assert state(db, run) == ("pending", 0, 0, 0)


def test_an_exception_or_a_cancellation_after_a_move_rolls_it_back(
    db: psycopg.Connection[Any], database_url: str, pipelined: bool
) -> None:
    run, _ = insert_run(db, ["a"])

    async def body(conn: AConn) -> None:
        with pytest.raises(RuntimeError):
            async with run_transaction(conn, run, defer_lock=True) as txn:
                await txn.move_steps("ready", *READY)
                raise RuntimeError("the body failed")
        with anyio.move_on_after(0.2) as scope:
            async with run_transaction(conn, run, defer_lock=True) as txn:
                await txn.move_steps("ready", *READY)
                await anyio.sleep(30)
        assert scope.cancelled_caught

    with_conn(database_url, body)
    assert state(db, run) == ("pending", 0, 0, 0)


def test_inside_an_outer_transaction_it_is_a_savepoint(
    db: psycopg.Connection[Any], database_url: str, pipelined: bool
) -> None:
    run, _ = insert_run(db, ["a"])

    async def body(conn: AConn) -> None:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                async with run_transaction(conn, run, defer_lock=True) as txn:
                    await txn.move_steps("ready", *READY)
                cur = await conn.execute("SELECT event_seq FROM runs WHERE id = %s", (run,))
                assert await cur.fetchone() == {"event_seq": 1}  # flushed in the outer transaction
                raise RuntimeError("outer rollback")

    with_conn(database_url, body)
    assert state(db, run) == ("pending", 0, 0, 0)
