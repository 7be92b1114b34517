"""Run control and live events: resume, signal, fork, and the SSE event log of a run.

Each control route checks ownership and re-checks the grant (`api.access.recheck_run_grant`: the
flow still exists; a run of a flow shared with the caller needs the share still to allow running,
and resume/fork need the run's version to be the one the share grants now), then calls one engine
command (`engine/commands.py`: it owns the run transaction and publishes the committed outbox rows;
its refusals map to problem+json in `api/errors.py`): `resume`, `signal`, `fork`.
`events` replays the event log from `Last-Event-ID` (or `?after=`) and follows it live through the
process's `EventHub`, as a guarded stream (`api/streams.py`: per-user cap, credentials re-checked
while it runs).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, RequestBody
from litestar.response import ServerSentEvent

from flowstudio.api.access import recheck_run_grant
from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, User, requires
from flowstudio.api.errors import invalid
from flowstudio.api.events import RunEventOut, stream_run_events
from flowstudio.api.runs import RunCreated, owned_run
from flowstudio.api.streams import guarded_stream
from flowstudio.engine import commands
from flowstudio.engine.flowcache import load_graph
from flowstudio.flows.graph import FlowGraph
from flowstudio.store.db import Conn


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
    conn: Conn, user: User, run_id: UUID, *, same_version: bool = True
) -> tuple[dict[str, Any], FlowGraph]:
    run = await owned_run(conn, user, run_id)
    await recheck_run_grant(conn, user, run, same_version=same_version)
    return run, await load_graph(conn, run["flow_id"], run["flow_version"])


@post("/api/v1/runs/{run_id:uuid}/resume", status_code=202, guards=[requires("runs:write")])
async def resume(
    run_id: FromPath[UUID], state: State, user: CurrentUser, conn: RequestConn
) -> RunCreated:
    _, graph = await _controlled_run(conn, user, run_id)
    moved = await commands.resume(conn, state.publisher, run_id, graph)
    return RunCreated(id=moved.id, status=moved.status)


@post("/api/v1/runs/{run_id:uuid}/signal", status_code=202, guards=[requires("runs:write")])
async def signal(
    run_id: FromPath[UUID],
    data: RequestBody[SignalIn],
    state: State,
    user: CurrentUser,
    conn: RequestConn,
) -> SignalOut:
    _, graph = await _controlled_run(conn, user, run_id, same_version=False)
    sent = await commands.signal(
        conn, state.publisher, run_id, graph, data.node_id, data.payload, data.item_index
    )
    return SignalOut(id=sent.id, delivered=sent.delivered, status=sent.status)


@post("/api/v1/runs/{run_id:uuid}/fork", status_code=202, guards=[requires("runs:write")])
async def fork(
    run_id: FromPath[UUID],
    data: RequestBody[ForkIn],
    state: State,
    user: CurrentUser,
    conn: RequestConn,
) -> ForkOut:
    parent, graph = await _controlled_run(conn, user, run_id)
    forked = await commands.fork(
        conn, state.publisher, parent, graph, data.from_node_id, data.inputs, user.id
    )
    return ForkOut(
        id=forked.id,
        status=forked.status,
        parent_run_id=str(run_id),
        fork_of_node=data.from_node_id,
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


@get("/api/v1/runs/{run_id:uuid}/events", guards=[requires("runs:read")], responses=EVENTS_DOCS)
async def events(
    run_id: FromPath[UUID],
    request: AnyRequest,
    state: State,
    user: CurrentUser,
    conn: RequestConn,
    after: FromQuery[int | None] = None,
) -> ServerSentEvent:
    await owned_run(conn, user, run_id)
    last = request.headers.get("last-event-id")
    try:
        start = int(last) if last else (after or 0)
    except ValueError as exc:
        raise invalid(
            "header.Last-Event-ID", "not an integer", "Last-Event-ID must be an integer"
        ) from exc
    source = stream_run_events(state.pool, state.hub, str(run_id), start)
    return ServerSentEvent(
        guarded_stream(request, user, source),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ROUTES = [resume, signal, fork, events]
