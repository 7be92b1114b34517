"""The engine's command layer (`engine/commands.py`) in-process on a real PostgreSQL: each command
owns its transaction and publishes what it committed; a refusal is a typed `CommandError` and
changes nothing (status, event log and outbox as they were)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg.rows import dict_row

from flowstudio.engine import commands
from flowstudio.engine.errors import CommandError, ErrorCode
from flowstudio.engine.runtxn import OutboxMessage
from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import FlowDefinition
from tests.support.dbrows import insert_run
from tests.support.infra import private_database

EMPTY = FlowGraph.build(FlowDefinition(nodes=[]))


class Recorder:
    """A publisher that records what the commands hand it."""

    def __init__(self) -> None:
        self.calls: list[list[OutboxMessage]] = []

    async def publish_committed(self, messages: list[OutboxMessage]) -> bool:
        self.calls.append(messages)
        return True


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """This module's own database: its rows must never reach the shared stack's workers."""
    with private_database("fs_commands") as url:
        yield url


def run_status(db: psycopg.Connection[Any], run: str) -> tuple[str, int]:
    row = db.execute("SELECT status, event_seq FROM runs WHERE id = %s", (run,)).fetchone()
    assert row is not None
    return row[0], row[1]


def call(database_url: str, command: Any, *args: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await command(conn, *args, **kwargs)

    return anyio.run(main)


def test_cancel_moves_a_live_run_and_refuses_a_finished_one(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    run, _ = insert_run(db, ["a", "b"])
    publisher = Recorder()
    moved = call(database_url, commands.cancel, publisher, run, reason="test")
    assert (moved.id, moved.status) == (run, "cancelled")
    assert publisher.calls == [[]], "the command publishes what it committed (nothing to run)"
    before = run_status(db, run)
    with pytest.raises(CommandError) as refused:
        call(database_url, commands.cancel, publisher, run, reason="again")
    assert refused.value.code is ErrorCode.RUN_FINISHED
    assert refused.value.detail == "run is already cancelled" and not refused.value.retryable
    assert run_status(db, run) == before, "a refusal changes nothing"


def test_a_missing_run_is_run_not_found(database_url: str) -> None:
    with pytest.raises(CommandError) as refused:
        call(database_url, commands.cancel, Recorder(), str(uuid.uuid4()), reason="x")
    assert refused.value.code is ErrorCode.RUN_NOT_FOUND


def test_resume_refuses_a_run_that_did_not_fail(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    run, _ = insert_run(db, ["a"])
    before = run_status(db, run)
    with pytest.raises(CommandError) as refused:
        call(database_url, commands.resume, Recorder(), run, EMPTY)
    assert refused.value.code is ErrorCode.RUN_NOT_RESUMABLE
    assert run_status(db, run) == before


def test_signal_to_an_unknown_node_names_the_field(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    run, _ = insert_run(db, ["a"])
    with pytest.raises(CommandError) as refused:
        call(database_url, commands.signal, Recorder(), run, EMPTY, "nope", {"x": 1})
    error = refused.value
    assert (error.code, error.field, error.reason) == (
        ErrorCode.UNKNOWN_NODE,
        "node_id",
        "unknown node",
    )
    (signals,) = db.execute("SELECT count(*) FROM signals WHERE run_id = %s", (run,)).fetchone()
    assert signals == 0
