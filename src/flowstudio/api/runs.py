"""Run routes: start a run (idempotent), read a run with its steps, list runs, events, cancel.

`start_flow_run` checks access (`api.access.runnable_flow`: owner, admin or a 'run' share; tweaks
are the owner's only) and pins the version (`api.access.run_version`: for the owner the named one,
else the published one, else the latest; for a shared user only the published version their share
grants); it calls the engine command `engine.commands.start` (run + steps + outbox in one
transaction, then the committed outbox rows published at once; the orchestrator's relay covers a
failed publish). `cancel` calls `engine.commands.cancel`; refusals map in `api/errors.py`. The
same `Idempotency-Key` returns the same run, also after the API was killed between the commit and
the answer; reused on another flow it answers 409. The run detail adds `usage`, the LLM tokens of its steps (`total_usage`).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from flowstudio.api.access import EDIT_ACCESS, run_version, runnable_flow
from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, User, requires, seen_or_404
from flowstudio.api.errors import decode_optional_body, forbidden, invalid, not_found, rejected
from flowstudio.api.node_access import check_code_tweaks
from flowstudio.api.run_filters import parse_run_filters
from flowstudio.engine import commands
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.states import RunStatus, StepStatus
from flowstudio.flows.validate import validate_tweaks
from flowstudio.nodes import registry
from flowstudio.store import runs as store
from flowstudio.store.db import Conn


class RunIn(msgspec.Struct, kw_only=True):
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    version: int | None = None


# Two small Structs then a row Struct, alike in shape to api/flows.py's PortOut/NodeTypeOut only.
class RunCreated(msgspec.Struct, kw_only=True):
    """A run's id and status after a start or a move (create, cancel, resume)."""

    id: str
    status: str


class RunOut(msgspec.Struct, kw_only=True):
    """A run row (`store.runs.RUN_COLS`); inputs, outputs, error and tweaks are free-form JSON."""

    id: UUID
    flow_id: UUID
    flow_version: int
    owner_id: UUID
    status: RunStatus
    inputs: dict[str, Any]
    outputs: Any
    error: Any
    idempotency_key: str | None
    parent_run_id: UUID | None
    fork_of_node: str | None
    batch_id: UUID | None
    batch_index: int | None
    tweaks: dict[str, Any]
    event_seq: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class StepOut(msgspec.Struct, kw_only=True):
    """A step row with its payloads (`store.runs.get_steps`); input/output/error are free-form."""

    id: int
    node_id: str
    node_type: str
    item_index: int
    status: StepStatus
    attempt: int
    max_attempts: int
    branch: str | None
    error: Any
    due_at: datetime | None
    created_at: datetime
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    input: Any
    output: Any


class Usage(msgspec.Struct, kw_only=True):
    """LLM tokens (the OpenAI `usage` shape)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RunDetail(RunOut, kw_only=True):
    usage: Usage
    steps: list[StepOut]


class RunPage(msgspec.Struct, kw_only=True):
    items: list[RunOut]
    next_cursor: str | None


async def start_flow_run(
    state: State,
    conn: Conn,
    user: User,
    flow_id: UUID,
    inputs: dict[str, Any],
    version: int | None,
    idempotency_key: str | None,
    tweaks: dict[str, Any] | None = None,
) -> RunCreated:
    flow, access = await runnable_flow(conn, user, flow_id)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise invalid(
            "header.Idempotency-Key", "1-255 characters", "Idempotency-Key must be 1-255 characters"
        )
    pinned = await run_version(conn, user, flow, access, version)
    if tweaks and access not in EDIT_ACCESS:
        raise forbidden(
            "tweaks change the flow; only its owner may send them",
            path="body.tweaks",
            reason="only the flow's owner may tweak it",
        )
    if tweaks:
        graph = await load_graph(conn, flow_id, pinned)
        check_code_tweaks(graph.definition, tweaks, user)
        errors = validate_tweaks(graph.definition, tweaks)
        if errors:
            raise rejected(msgspec.to_builtins(errors), title="Invalid tweaks")
    started = await commands.start(
        state.publisher,
        conn,
        flow_id=flow_id,
        version=pinned,
        owner_id=user.id,
        inputs=inputs,
        idempotency_key=idempotency_key,
        tweaks=tweaks,
    )
    return RunCreated(id=started.id, status=started.status)


@post("/api/v1/flows/{flow_id:uuid}/runs", status_code=202, guards=[requires("runs:write")])
async def create_run(
    flow_id: FromPath[UUID], request: AnyRequest, state: State, user: CurrentUser, conn: RequestConn
) -> RunCreated:
    raw = await request.body()
    data = decode_optional_body(raw, RunIn)
    return await start_flow_run(
        state,
        conn,
        user,
        flow_id,
        data.inputs,
        data.version,
        request.headers.get("idempotency-key"),
    )


async def owned_run(conn: Conn, user: User, run_id: UUID) -> dict[str, Any]:
    run = seen_or_404(await store.get_run(conn, run_id), user, "run")
    if user.flow_scope is not None and str(run["flow_id"]) != user.flow_scope:
        raise not_found("run")  # a `run:flow:` API key reads the runs of its one flow only
    return run


@get("/api/v1/runs/{run_id:uuid}", guards=[requires("runs:read")])
async def get_run(run_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> RunDetail:
    run = await owned_run(conn, user, run_id)
    steps = await store.get_steps(conn, run_id)
    return msgspec.convert({**run, "usage": total_usage(steps), "steps": steps}, RunDetail)


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def total_usage(steps: list[dict[str, Any]]) -> Usage:
    """LLM token usage of the run: the sum of `output.usage` over the steps of node types that
    report usage (`extra={"reports_usage": True}`: llm_chat, embeddings, ...), not pass-throughs."""
    total = dict.fromkeys(USAGE_KEYS, 0)
    for step in steps:
        spec = registry.get(step["node_type"])
        if spec is None or not spec.extra.get("reports_usage"):
            continue
        output = step.get("output")
        usage = output.get("usage") if isinstance(output, dict) else None
        if isinstance(usage, dict):
            for key in USAGE_KEYS:
                value = usage.get(key)
                total[key] += value if isinstance(value, int) else 0
    return Usage(**total)


def _cursor_out(row: dict[str, Any]) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _cursor_in(cursor: str) -> tuple[datetime, UUID]:
    try:
        ts, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(ts), UUID(rid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("query.cursor", "invalid cursor") from exc


@get("/api/v1/runs", guards=[requires("runs:read")])
async def list_runs(
    user: CurrentUser,
    conn: RequestConn,
    flow_id: FromQuery[UUID | None] = None,
    status: FromQuery[str | None] = None,
    limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
    created_after: FromQuery[str | None] = None,
    created_before: FromQuery[str | None] = None,
    batch_id: FromQuery[str | None] = None,
) -> RunPage:
    filters = parse_run_filters(created_after, created_before, batch_id)
    if not 1 <= limit <= 500:
        raise invalid("query.limit", "must be between 1 and 500", "limit must be 1-500")
    rows = await store.list_runs(
        conn,
        owner_id=None if user.is_admin else user.id,
        flow_id=flow_id,
        status=status,
        limit=limit,
        before=_cursor_in(cursor) if cursor else None,
        created_after=filters.created_after,
        created_before=filters.created_before,
        batch_id=filters.batch_id,
    )
    return RunPage(
        items=msgspec.convert(rows, list[RunOut]),
        next_cursor=_cursor_out(rows[-1]) if len(rows) == limit else None,
    )


@post("/api/v1/runs/{run_id:uuid}/cancel", status_code=202, guards=[requires("runs:write")])
async def cancel(
    run_id: FromPath[UUID], state: State, user: CurrentUser, conn: RequestConn
) -> RunCreated:
    await owned_run(conn, user, run_id)
    moved = await commands.cancel(
        conn, state.publisher, run_id, reason=f"cancelled by {user.email}"
    )
    return RunCreated(id=moved.id, status=moved.status)


ROUTES = [create_run, get_run, list_runs, cancel]
