"""Run control and live events: resume, signal, fork, and the SSE event log of a run.

Each control route checks ownership and re-checks the grant (`api.access.recheck_run_grant`: the
flow still exists; a run of a flow shared with the caller needs the share still to allow running,
and resume/fork need the run's version to be the one the share grants now), then runs one engine
function inside `run_transaction` (run row locked) and publishes the committed outbox rows: `resume`
-> `control.resume_run`, `signal` -> `control.deliver_signal`, `fork` -> `control.fork_run`.
`events` replays the event log from `Last-Event-ID` (or `?after=`) and follows it live through the
process's `EventHub`, as a guarded stream (`api/streams.py`: per-user cap, credentials re-checked
while it runs).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import ServerSentEvent

from flowstudio.api.access import recheck_run_grant
from flowstudio.api.deps import User, require
from flowstudio.api.errors import Problem, not_found
from flowstudio.api.events import RunEventOut, stream_run_events
from flowstudio.api.runs import RunCreated, owned_run
from flowstudio.api.streams import guarded_stream
from flowstudio.engine import control
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.runtxn import LostRace, RunTxn, run_transaction
from flowstudio.flows.graph import FlowGraph


class SignalIn(msgspec.Struct, kw_only=True):
    node_id: str
    payload: Any = None
    item_index: int = 0


class ForkIn(msgspec.Struct, kw_only=True):
    from_node_id: str
    inputs: dict[str, Any] | None = None


class SignalOut(msgspec.Struct, kw_only=True):
    id: str
    delivered: bool  # true: a waiting step consumed it now; false: buffered until the node waits
    status: str


class ForkOut(msgspec.Struct, kw_only=True):
    id: str
    status: str
    parent_run_id: str
    fork_of_node: str


async def _controlled_run(
    conn: psycopg.AsyncConnection[Any], user: User, run_id: UUID, *, same_version: bool = True
) -> tuple[dict[str, Any], FlowGraph]:
    require(user, "runs:write")
    run = await owned_run(conn, user, run_id)
    await recheck_run_grant(conn, user, run, same_version=same_version)
    return run, await load_graph(conn, run["flow_id"], run["flow_version"])


def _check_node(graph: FlowGraph, node_id: str, field: str) -> None:
    if node_id not in graph.nodes:
        raise Problem(
            422,
            "Unprocessable Content",
            f"no node {node_id!r} in this flow",
            errors=[{"path": f"body.{field}", "reason": "unknown node"}],
        )


async def _in_run_transaction(
    state: State,
    conn: psycopg.AsyncConnection[Any],
    run_id: UUID,
    move: Callable[[RunTxn], Awaitable[Any]],
) -> tuple[RunTxn, Any]:
    """Run `move` under the run lock, then publish what it committed (404 if the run vanished)."""
    try:
        async with run_transaction(conn, run_id) as txn:
            result = await move(txn)
    except LostRace as exc:
        raise not_found("run") from exc
    await state.publisher.publish_committed(txn.outbox)
    return txn, result


@post("/api/v1/runs/{run_id:uuid}/resume", status_code=202)
async def resume(
    run_id: UUID, state: State, user: User, conn: psycopg.AsyncConnection[Any]
) -> RunCreated:
    _, graph = await _controlled_run(conn, user, run_id)

    async def move(txn: RunTxn) -> None:
        if txn.status not in ("failed", "cancelled"):
            raise Problem(
                409, "Conflict", f"only failed or cancelled runs resume; run is {txn.status}"
            )
        await control.resume_run(txn, graph)

    txn, _ = await _in_run_transaction(state, conn, run_id, move)
    return RunCreated(id=str(run_id), status=txn.status)


@post("/api/v1/runs/{run_id:uuid}/signal", status_code=202)
async def signal(
    run_id: UUID, data: SignalIn, state: State, user: User, conn: psycopg.AsyncConnection[Any]
) -> SignalOut:
    _, graph = await _controlled_run(conn, user, run_id, same_version=False)
    _check_node(graph, data.node_id, "node_id")

    async def move(txn: RunTxn) -> bool:
        if txn.terminal:
            raise Problem(409, "Conflict", f"run is already {txn.status}")
        return await control.deliver_signal(txn, graph, data.node_id, data.payload, data.item_index)

    txn, delivered = await _in_run_transaction(state, conn, run_id, move)
    return SignalOut(id=str(run_id), delivered=delivered, status=txn.status)


@post("/api/v1/runs/{run_id:uuid}/fork", status_code=202)
async def fork(
    run_id: UUID, data: ForkIn, state: State, user: User, conn: psycopg.AsyncConnection[Any]
) -> ForkOut:
    parent, graph = await _controlled_run(conn, user, run_id)
    _check_node(graph, data.from_node_id, "from_node_id")
    new_id, outbox = await control.fork_run(
        conn, parent, graph, data.from_node_id, data.inputs, user.id
    )
    await state.publisher.publish_committed(outbox)
    return ForkOut(
        id=new_id, status="queued", parent_run_id=str(run_id), fork_of_node=data.from_node_id
    )


EVENTS_DOCS = {
    200: ResponseSpec(
        RunEventOut,
        generate_examples=False,
        media_type="text/event-stream",
        description="Server-Sent Events: the event log (each `data:` a RunEventOut, `id:` its "
        "seq), live `token` events, keepalive comments, then `end` with the run's status.",
    )
}


@get("/api/v1/runs/{run_id:uuid}/events", responses=EVENTS_DOCS)
async def events(
    run_id: UUID,
    request: Request[Any, Any, Any],
    state: State,
    user: User,
    conn: psycopg.AsyncConnection[Any],
    after: int | None = None,
) -> ServerSentEvent:
    require(user, "runs:read")
    await owned_run(conn, user, run_id)
    last = request.headers.get("last-event-id")
    try:
        start = int(last) if last else (after or 0)
    except ValueError as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            "Last-Event-ID must be an integer",
            errors=[{"path": "header.Last-Event-ID", "reason": "not an integer"}],
        ) from exc
    source = stream_run_events(state.pool, state.hub, str(run_id), start)
    return ServerSentEvent(
        guarded_stream(request, user, source),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ROUTES = [resume, signal, fork, events]
