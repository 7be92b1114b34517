"""Group commit (`engine.groupcommit.commit_successes`) on a real PostgreSQL, in process.

Three runs of a 3-node chain (`in -> noop -> out`) have their first step claimed by one worker; their
successes commit in ONE transaction (pipelined and one statement at a time): the two whose fence
holds commit (payload, events gapless per run, the successor claimed eagerly with its context rows)
while the third, whose attempt no longer matches (its lease was lost), is a `LostRace` for itself
only and leaves nothing behind (its successor stays pending: the guarded ready move). That step then
commits alone. A mixed group: a run's last step (the general path: the run ends), a chain step (its
one call, migration 0027) and a chain step whose run is not `running` (its call writes nothing and
is answered None, then commits alone; the worker's committer commits such a member through the
general path at once, without asking the one call again). The worker-level grouping and a crash
between the group's
statements are tested in test_crash_groups.py (`test_worker_killed_inside_a_group_commit_...`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from flowstudio.bench.workload import create_chain_flow
from flowstudio.engine import checkpoint, claim
from flowstudio.engine.checkpoint import EagerClaim
from flowstudio.engine.groupcommit import Committed, Success, commit_successes
from flowstudio.engine.runtxn import LostRace
from flowstudio.settings import load_settings
from flowstudio.store.db import open_pool
from flowstudio.worker.context import context_nodes
from flowstudio.worker.groupcommit import GroupCommitter
from tests.integration.test_runtxn import pipelined  # noqa: F401 -- fixture: with and without
from tests.support.infra import private_database

AConn = psycopg.AsyncConnection[Any]
WORKER = "worker:test:1:group"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with private_database("fs_group") as url:  # its ready steps must reach no worker
        yield url


async def _claim_first(
    conn: AConn, owner: str, flow: str, inputs: dict[str, Any] | None = None
) -> Any:
    """Start a run of `flow` and claim its first step for WORKER."""
    started = await checkpoint.start_run(
        conn, flow_id=flow, version=1, owner_id=owner, inputs=inputs or {}
    )
    (msg,) = started.outbox
    return await claim.claim_step(
        conn,
        run_id=started.id,
        step_id=msg.step_id,
        token=msg.token,
        worker_id=WORKER,
        lease_seconds=30,
    )


async def _scenario(conn: AConn) -> list[str]:
    owner, flow = await create_chain_flow(conn, 3)
    claimed = [await _claim_first(conn, owner, flow, {"i": i}) for i in range(3)]
    stale = dataclasses.replace(claimed[1], attempt=claimed[1].attempt + 1)  # lease lost
    eager = EagerClaim(30, context_nodes)
    members = [
        Success(claimed[0], WORKER, {"i": 0}, {"i": 0}, eager=eager),
        Success(stale, WORKER, {"i": 1}, {"i": 1}, eager=eager),
        Success(claimed[2], WORKER, {"i": 2}, {"i": 2}, eager=eager),
    ]
    results = await commit_successes(conn, members)
    assert isinstance(results[1], LostRace)
    for result in (results[0], results[2]):
        assert isinstance(result, Committed) and result.outbox == []
        assert result.next is not None and result.next.step.node_id == "noop1"
        assert [r["node_id"] for r in result.next.context_rows] == ["in"]
        assert result.next.context_rows[0]["status"] == "succeeded"
    lost_run = claimed[1].run_id
    cur = await conn.execute(
        "SELECT node_id, status FROM steps WHERE run_id = %s ORDER BY node_id", (lost_run,)
    )
    assert {r["node_id"]: r["status"] for r in await cur.fetchall()} == {
        "in": "running",
        "noop1": "pending",
        "out": "pending",
    }
    # the lost member's own commit still works alone, with its right fence
    outbox, _ = await checkpoint.commit_success(
        conn, claimed[1], WORKER, input_={"i": 1}, output={"i": 1}
    )
    assert len(outbox) == 1
    return [c.run_id for c in claimed]


@pytest.mark.usefixtures("pipelined")
def test_a_group_commits_its_members_and_a_lost_race_drops_only_its_own(database_url: str) -> None:
    async def main() -> list[str]:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await _scenario(conn)

    runs = anyio.run(main)
    with psycopg.connect(database_url) as db:
        for run in runs:
            seqs = [
                r[0]
                for r in db.execute(
                    "SELECT seq FROM run_events WHERE run_id = %s ORDER BY seq", (run,)
                ).fetchall()
            ]
            (event_seq,) = db.execute("SELECT event_seq FROM runs WHERE id = %s", (run,)).fetchone()
            assert seqs == list(range(1, event_seq + 1)), (run, seqs)
        (succeeded,) = db.execute(
            """SELECT count(*) FROM run_events WHERE run_id = ANY(%s::uuid[]) AND kind = 'step'
               AND to_status = 'succeeded'""",
            (runs,),
        ).fetchone()
        assert succeeded == 3  # each `in` once: grouped (2) and alone (1)


async def _event_seq(conn: AConn, run_id: str) -> int:
    cur = await conn.execute("SELECT event_seq FROM runs WHERE id = %s", (run_id,))
    row = await cur.fetchone()
    assert row is not None
    return int(row["event_seq"])


async def _mixed(conn: AConn) -> None:
    owner, flow = await create_chain_flow(conn, 3)
    eager = EagerClaim(30, context_nodes)
    last = await _claim_first(conn, owner, flow)  # run 0: driven to its last step, `out`
    while last.node_id != "out":
        _, nxt = await checkpoint.commit_success(
            conn, last, WORKER, input_={}, output={}, eager=eager
        )
        assert nxt is not None
        last = nxt.step
    chained = await _claim_first(conn, owner, flow)  # run 1: `in`, a chain step (one call)
    parked = await _claim_first(conn, owner, flow)  # run 2: `in`, its run not `running`
    await conn.execute("UPDATE runs SET status = 'waiting' WHERE id = %s", (parked.run_id,))
    seq_before = await _event_seq(conn, parked.run_id)
    results = await commit_successes(
        conn,
        [
            Success(last, WORKER, {}, {"done": 0}, eager=eager),
            Success(chained, WORKER, {}, {"i": 1}, eager=eager),
            Success(parked, WORKER, {}, {"i": 2}, eager=eager),
        ],
    )
    ended, one_call, alone = results
    assert isinstance(ended, Committed) and ended.next is None
    assert isinstance(one_call, Committed) and one_call.next is not None
    assert one_call.next.step.node_id == "noop1"
    assert alone is None  # its one call wrote nothing: the slot commits it alone
    cur = await conn.execute("SELECT status FROM runs WHERE id = %s", (last.run_id,))
    assert (await cur.fetchone())["status"] == "succeeded"  # type: ignore[index]
    assert await _event_seq(conn, parked.run_id) == seq_before  # nothing logged for it
    _, nxt = await checkpoint.commit_success(
        conn, parked, WORKER, input_={}, output={"i": 2}, eager=eager
    )
    assert nxt is not None and nxt.step.node_id == "noop1"


@pytest.mark.usefixtures("pipelined")
def test_a_group_mixes_one_call_members_general_members_and_a_member_left_to_commit_alone(
    database_url: str,
) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            await _mixed(conn)

    anyio.run(main)


async def _one_calls(conn: AConn) -> int:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    cur = await conn.execute(
        "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_user_functions"
        " WHERE funcname = 'step_commit_success'"
    )
    return int((await cur.fetchone())["n"])  # type: ignore[index]


def test_the_committer_commits_a_member_its_one_call_left_through_the_general_path_at_once(
    database_url: str,
) -> None:
    """Asking the one call again for a member it answered `general` would answer the same: the
    worker's committer takes the general path for it right after the group, once."""

    async def main() -> None:
        settings = msgspec.structs.replace(load_settings(None), database_url=database_url)
        pool = await open_pool(settings, max_size=1)  # one session: its track_functions count
        try:
            async with pool.connection() as conn:
                owner, flow = await create_chain_flow(conn, 3)
                eager = EagerClaim(30, context_nodes)
                chained = await _claim_first(conn, owner, flow)
                parked = await _claim_first(conn, owner, flow)
                await conn.execute(
                    "UPDATE runs SET status = 'waiting' WHERE id = %s", (parked.run_id,)
                )
            committer = GroupCommitter(settings, pool, {})
            async with pool.connection() as conn:
                await conn.execute("SET track_functions = 'pl'")
                before = await _one_calls(conn)
            written = await committer.commit_group(
                [
                    Success(chained, WORKER, {}, {"i": 1}, eager=eager),
                    Success(parked, WORKER, {}, {"i": 2}, eager=eager),
                ]
            )
            for result in written:
                assert isinstance(result, tuple)
                _, nxt = result
                assert nxt is not None and nxt.step.node_id == "noop1"
            async with pool.connection() as conn:
                # one call per member in the group's statement, none again for `parked`
                assert await _one_calls(conn) - before == 2
                cur = await conn.execute("SELECT status FROM runs WHERE id = %s", (parked.run_id,))
                assert (await cur.fetchone())["status"] == "running"  # type: ignore[index]
        finally:
            await pool.close()

    anyio.run(main)
