"""Langflow-style synchronous runs for chat apps: `POST /api/v1/run/{flow_id_or_endpoint_name}`.

`run_flow` validates `tweaks` (per-node param overrides for this run only), starts a durable run
with inputs `{"input_value": ..., **inputs}` through the same path as async runs (idempotency
included), then either waits for the outputs (200) until `timeout` (then 202 with the run id: the
run goes on), or with `?stream=true` streams Server-Sent Events: a first `run` event (and the
`X-Run-Id` header) naming the run, so a dropped stream resumes on GET /api/v1/runs/{id}/events with
Last-Event-ID; every step event as it commits, keepalive comments, and a final `end` event carrying
the outputs. The path takes a flow id or the caller's endpoint name (`api.access.resolve_flow_ref`).
Streams are guarded (`api/streams.py`: per-user cap, credentials re-checked while streaming); a wait
re-checks the credentials before it answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Response, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, RequestBody
from litestar.response import ServerSentEventMessage

from flowstudio.api.access import resolve_flow_ref
from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, requires
from flowstudio.api.errors import invalid, unauthorized
from flowstudio.api.events import EventStream, stream_run_events, wait_terminal
from flowstudio.api.runs import start_flow_run
from flowstudio.api.streams import (
    guarded_stream,
    release_stream,
    reserve_stream,
    still_authorized,
)
from flowstudio.store import runs as run_store


class SyncRunIn(msgspec.Struct, kw_only=True):
    input_value: Any = None
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    tweaks: dict[str, Any] = msgspec.field(default_factory=dict)
    version: int | None = None


class RunResult(msgspec.Struct, kw_only=True):
    """The answer of a sync run (also the `end` event's data of its stream)."""

    run_id: str
    status: str
    outputs: Any  # the run's free-form outputs (None until it succeeded)
    error: Any


def result_body(run: dict[str, Any]) -> RunResult:
    return RunResult(
        run_id=str(run["id"]), status=run["status"], outputs=run["outputs"], error=run["error"]
    )


RESULT_DOCS = {
    200: ResponseSpec(
        RunResult,
        generate_examples=False,
        description="The run finished. With ?stream=true: text/event-stream instead (a `run` "
        "event naming the run, the step and `token` events, then `end` with this object).",
    ),
    202: ResponseSpec(
        RunResult, generate_examples=False, description="`timeout` passed first; the run goes on."
    ),
}


@post(
    "/api/v1/run/{flow_id:str}",
    status_code=200,
    guards=[requires("runs:write")],
    responses=RESULT_DOCS,
)
async def run_flow(
    flow_id: FromPath[str],
    data: RequestBody[SyncRunIn],
    request: AnyRequest,
    state: State,
    user: CurrentUser,
    conn: RequestConn,
    stream: FromQuery[bool] = False,
    timeout: FromQuery[float] = 60.0,
) -> Response[RunResult] | EventStream:
    if not 0 < timeout <= 600:
        raise invalid("query.timeout", "must be in (0, 600]", "timeout must be in (0, 600] seconds")
    inputs = {**data.inputs, "input_value": data.input_value}
    if stream:
        reserve_stream(request, user)  # a user over the stream cap starts no run
    try:
        created = await start_flow_run(
            state,
            conn,
            user,
            await resolve_flow_ref(conn, user, flow_id),
            inputs,
            data.version,
            request.headers.get("idempotency-key"),
            tweaks=data.tweaks,
        )
    except BaseException:
        if stream:
            release_stream(request, user)
        raise
    if stream:
        return EventStream(
            guarded_stream(request, user, _stream(state, created.id), reserved=True),
            headers={
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Run-Id": str(created.id),
                "Access-Control-Expose-Headers": "X-Run-Id",
            },
        )
    run = await wait_terminal(state.pool, state.hub, created.id, timeout)
    if not await still_authorized(request, user):  # logged out while waiting: no outputs
        raise unauthorized("credentials revoked while the run was waited for")
    if run["status"] in ("succeeded", "failed", "cancelled"):
        return Response(result_body(run), status_code=200)
    return Response(result_body(run), status_code=202)


async def _stream(state: State, run_id: str) -> AsyncIterator[ServerSentEventMessage]:
    # First the run's identity (no `id`, so Last-Event-ID stays the event log's sequence): a client
    # whose stream drops resumes with GET /api/v1/runs/{run_id}/events instead of guessing the run.
    run_ref = {"run_id": str(run_id), "events": f"/api/v1/runs/{run_id}/events"}
    yield ServerSentEventMessage(data=msgspec.json.encode(run_ref).decode(), event="run")
    async for message in stream_run_events(state.pool, state.hub, run_id, 0):
        if message.event == "end":
            async with state.pool.connection() as conn:
                run = await run_store.get_run(conn, run_id)
            body: Any = result_body(run) if run else {"run_id": run_id, "status": "deleted"}
            yield ServerSentEventMessage(
                data=msgspec.json.encode(body).decode(), event="end", id=message.id
            )
            return
        yield message


ROUTES = [run_flow]
