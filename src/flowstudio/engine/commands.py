"""The engine's command layer: what a caller (the API) may ask of runs and batches, one call each.

Each command owns its transaction: it opens `run_transaction` (run row locked), checks the run's
state, makes the engine move, commits, then publishes the committed outbox rows (the orchestrator's
relay covers a failed publish). Callers never open a run transaction themselves; they check who may
act (ownership, shares, permissions) and hand over. A refusal is a `CommandError` with an
`ErrorCode` (`engine/errors.py`) and nothing changed; the API maps it to problem+json once.
- `start(publisher, conn, ...)`: `checkpoint.start_run` (run + steps + outbox, idempotent on the
  key) then publish; the crash point `api.run_committed` sits between the commit and the publish.
  `start` and `load_batch` are the engine functions wrapped (`_refusing`, `_publishing`), so their
  typed signatures are declared once, where the work is done.
- `cancel(run_id)`: a live run -> cancelled (`advance.cancel_run`).
- `resume(run_id, graph)`: a failed/cancelled run -> queued (`control.resume_run`).
- `signal(run_id, graph, node_id, ...)`: buffer or deliver a signal (`control.deliver_signal`).
- `fork(parent, graph, from_node, ...)`: a new run from `from_node` on (`control.fork_run`).
- `load_batch(...)` / `cancel_batch(batch_id)`: `engine.batches`, with typed refusals.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

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
P = ParamSpec("P")
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
    from_node: str,
    inputs: dict[str, Any] | None,
    owner_id: str,
) -> RunMoved:
    check_node(graph, from_node, "from_node_id")
    new_id, outbox = await control.fork_run(conn, parent, graph, from_node, inputs, owner_id)
    await publisher.publish_committed(outbox)
    return RunMoved(id=new_id, status="queued")


def _refusing(
    call: Callable[P, Awaitable[T]], refusals: dict[type[Exception], CommandError]
) -> Callable[P, Awaitable[T]]:
    """`call`, raising a fresh copy of `refusals[type]` for the exceptions it names."""

    @functools.wraps(call)
    async def refusing(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await call(*args, **kwargs)
        except tuple(refusals) as exc:
            e = next(v for k, v in refusals.items() if isinstance(exc, k))
            raise CommandError(e.code, e.detail, field=e.field, reason=e.reason) from exc

    return refusing


def _publishing(
    call: Callable[P, Awaitable[checkpoint.StartedRun]],
) -> Callable[Concatenate[Publisher, P], Awaitable[checkpoint.StartedRun]]:
    """`call` (which commits a run), then its committed outbox rows published."""

    @functools.wraps(call)
    async def publishing(
        publisher: Publisher, *args: P.args, **kwargs: P.kwargs
    ) -> checkpoint.StartedRun:
        started = await call(*args, **kwargs)
        crashpoint("api.run_committed")  # committed, not yet published: the relay's case
        await publisher.publish_committed(started.outbox)
        return started

    return publishing


_KEY_REUSED = "already used for a run of another flow"
# start(publisher, conn, flow_id=..., version=..., owner_id=..., inputs=..., idempotency_key=...,
# tweaks=...): `checkpoint.start_run`'s arguments, after the publisher.
start = _publishing(
    _refusing(
        checkpoint.start_run,
        {
            checkpoint.IdempotencyKeyReused: CommandError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                f"this Idempotency-Key is {_KEY_REUSED}",
                field="idempotency_key",
                reason=_KEY_REUSED,
            )
        },
    )
)
# load_batch(conn, batch_id=..., ...): `engine.batches.load_batch` (the batch and its runs; the
# orchestrator starts them), with typed refusals.
load_batch = _refusing(
    batches.load_batch,
    {
        batches.BatchCancelled: CommandError(
            ErrorCode.BATCH_CANCELLED, "the batch was cancelled while loading"
        ),
        psycopg.OperationalError: CommandError(
            ErrorCode.DATABASE_UNAVAILABLE, "database unavailable; batch failed"
        ),
    },
)


async def cancel_batch(conn: psycopg.AsyncConnection[Any], batch_id: Any, *, reason: str) -> None:
    """Batch -> cancelled with every live run of it; BATCH_FINISHED if it had already ended."""
    if await batches.cancel_batch(conn, batch_id, reason) is None:
        batch = await batch_store.get_batch(conn, batch_id)
        status = batch["status"] if batch is not None else "gone"
        raise CommandError(ErrorCode.BATCH_FINISHED, f"batch is already {status}")
