"""The engine's command layer: what a caller (the API) may ask of runs and batches, one call each.

Each command owns its transaction: it opens `run_transaction` (run row locked), checks the run's
state, makes the engine move, commits, then publishes the committed outbox rows (the orchestrator's
relay covers a failed publish). Callers never open a run transaction themselves; they check who may
act (ownership, shares, permissions) and hand over. A refusal is a `CommandError` with an
`ErrorCode` (`engine/errors.py`) and nothing changed; the API maps it to problem+json once.
- `start(...)`: `checkpoint.start_run` (run + steps + outbox, idempotent on the key) then publish;
  the crash point `api.run_committed` sits between the commit and the publish.
- `cancel(run_id)`: a live run -> cancelled (`advance.cancel_run`).
- `resume(run_id, graph)`: a failed/cancelled run -> queued (`control.resume_run`).
- `signal(run_id, graph, node_id, ...)`: buffer or deliver a signal (`control.deliver_signal`).
- `fork(parent, graph, from_node, ...)`: a new run from `from_node` on (`control.fork_run`).
- `load_batch(...)` / `cancel_batch(batch_id)`: `engine.batches`, with typed refusals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import psycopg

from flowstudio.crashpoints import crashpoint
from flowstudio.engine import batches, checkpoint, control
from flowstudio.engine.advance import cancel_run
from flowstudio.engine.errors import CommandError, ErrorCode
from flowstudio.engine.runtxn import LostRace, OutboxMessage, RunTxn, run_transaction
from flowstudio.engine.states import RUN_TERMINAL
from flowstudio.flows.graph import FlowGraph
from flowstudio.store import batches as batch_store

T = TypeVar("T")
RESUMABLE = ("failed", "cancelled")


class Publisher(Protocol):
    """What the commands need of `queue.outbox.OutboxPublisher`."""

    async def publish_committed(self, messages: list[OutboxMessage]) -> bool: ...


@dataclass(frozen=True)
class RunMoved:
    id: str
    status: str  # the run's status after the command committed


@dataclass(frozen=True)
class SignalSent(RunMoved):
    delivered: bool  # True: a waiting step consumed it now; False: it stays buffered


async def _in_run(
    conn: psycopg.AsyncConnection[Any],
    publisher: Publisher,
    run_id: Any,
    move: Callable[[RunTxn], Awaitable[T]],
) -> tuple[RunTxn, T]:
    """Run `move` under the run lock, commit, then publish what it committed."""
    try:
        async with run_transaction(conn, run_id) as txn:
            result = await move(txn)
    except LostRace as exc:
        raise CommandError(ErrorCode.RUN_NOT_FOUND, "run not found") from exc
    await publisher.publish_committed(txn.outbox)
    return txn, result


def _live(txn: RunTxn) -> None:
    if txn.status in RUN_TERMINAL:
        raise CommandError(ErrorCode.RUN_FINISHED, f"run is already {txn.status}")


def check_node(graph: FlowGraph, node_id: str, field: str) -> None:
    """Refuse a node the run's flow version does not have (`field` names the argument)."""
    if node_id not in graph.nodes:
        raise CommandError(
            ErrorCode.UNKNOWN_NODE,
            f"no node {node_id!r} in this flow",
            field=field,
            reason="unknown node",
        )


async def start(
    conn: psycopg.AsyncConnection[Any],
    publisher: Publisher,
    *,
    flow_id: Any,
    version: int,
    owner_id: str,
    inputs: dict[str, Any],
    idempotency_key: str | None,
    tweaks: dict[str, Any] | None = None,
) -> checkpoint.StartedRun:
    try:
        started = await checkpoint.start_run(
            conn,
            flow_id=flow_id,
            version=version,
            owner_id=owner_id,
            inputs=inputs,
            idempotency_key=idempotency_key,
            tweaks=tweaks,
        )
    except checkpoint.IdempotencyKeyReused as exc:
        reason = "already used for a run of another flow"
        raise CommandError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            f"this Idempotency-Key is {reason}",
            field="idempotency_key",
            reason=reason,
        ) from exc
    crashpoint("api.run_committed")
    await publisher.publish_committed(started.outbox)
    return started


async def cancel(
    conn: psycopg.AsyncConnection[Any], publisher: Publisher, run_id: Any, *, reason: str
) -> RunMoved:
    async def move(txn: RunTxn) -> None:
        _live(txn)
        await cancel_run(txn, reason)

    txn, _ = await _in_run(conn, publisher, run_id, move)
    return RunMoved(id=str(run_id), status=txn.status)


async def resume(
    conn: psycopg.AsyncConnection[Any], publisher: Publisher, run_id: Any, graph: FlowGraph
) -> RunMoved:
    async def move(txn: RunTxn) -> None:
        if txn.status not in RESUMABLE:
            raise CommandError(
                ErrorCode.RUN_NOT_RESUMABLE,
                f"only failed or cancelled runs resume; run is {txn.status}",
            )
        await control.resume_run(txn, graph)

    txn, _ = await _in_run(conn, publisher, run_id, move)
    return RunMoved(id=str(run_id), status=txn.status)


async def signal(
    conn: psycopg.AsyncConnection[Any],
    publisher: Publisher,
    run_id: Any,
    graph: FlowGraph,
    *,
    node_id: str,
    payload: Any,
    item_index: int = 0,
) -> SignalSent:
    check_node(graph, node_id, "node_id")

    async def move(txn: RunTxn) -> bool:
        _live(txn)
        return await control.deliver_signal(txn, graph, node_id, payload, item_index)

    txn, delivered = await _in_run(conn, publisher, run_id, move)
    return SignalSent(id=str(run_id), status=txn.status, delivered=delivered)


async def fork(
    conn: psycopg.AsyncConnection[Any],
    publisher: Publisher,
    parent: dict[str, Any],
    graph: FlowGraph,
    *,
    from_node: str,
    inputs: dict[str, Any] | None,
    owner_id: str,
) -> RunMoved:
    check_node(graph, from_node, "from_node_id")
    new_id, outbox = await control.fork_run(conn, parent, graph, from_node, inputs, owner_id)
    await publisher.publish_committed(outbox)
    return RunMoved(id=new_id, status="queued")


async def load_batch(
    conn: psycopg.AsyncConnection[Any],
    *,
    batch_id: Any,
    flow_id: Any,
    version: int,
    owner_id: str,
    total: int,
    items: Iterable[bytes],
) -> None:
    """Create the batch and its runs (`engine.batches.load_batch`); the orchestrator starts them."""
    try:
        await batches.load_batch(
            conn,
            batch_id=batch_id,
            flow_id=flow_id,
            version=version,
            owner_id=owner_id,
            total=total,
            items=items,
        )
    except batches.BatchCancelled as exc:
        raise CommandError(
            ErrorCode.BATCH_CANCELLED, "the batch was cancelled while loading"
        ) from exc
    except psycopg.OperationalError as exc:
        raise CommandError(
            ErrorCode.DATABASE_UNAVAILABLE, "database unavailable; batch failed"
        ) from exc


async def cancel_batch(conn: psycopg.AsyncConnection[Any], batch_id: Any, *, reason: str) -> None:
    """Batch -> cancelled with every live run of it; BATCH_FINISHED if it had already ended."""
    if await batches.cancel_batch(conn, batch_id, reason) is None:
        batch = await batch_store.get_batch(conn, batch_id)
        status = batch["status"] if batch is not None else "gone"
        raise CommandError(ErrorCode.BATCH_FINISHED, f"batch is already {status}")
