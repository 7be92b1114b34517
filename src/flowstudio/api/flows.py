"""Flow routes: create/list/get/update/delete, versions, and the node catalogue.

Definitions are validated by `flows/validate.py` before anything is written: a bad one answers 422
with each problem's path, node id and reason. `check_definition` runs off the event loop
(`offload.run_cpu`) and first enforces the size limits: over FLOW_MAX_BYTES of JSON is 413, over
FLOW_MAX_NODES / FLOW_MAX_EDGES is 422, each with the path. Access (api/access.py): GET and the list
also show flows shared with the caller (with their `access`: owner | admin | run | view); every
change goes through `owned_flow` (owner or admin; a shared user gets 403, anyone else 404). A
definition with a `code` node also passes `node_access.check_code_nodes` (CODE_NODE, the
`nodes:code` permission); the catalogue says per node type whether it is `available` here and, if
not, why. `endpoint_name` (POST/PUT) is the flow's per-owner alias for /run, webhooks and the OpenAI
endpoint; a taken name is 409. PUT is optimistically concurrent when the caller says which version
its edit is based on (`base_version` in the body or `If-Match: "<version>"`): a flow that moved on
answers 409 problem+json with `current_version`, and nothing is written. Without either, the last
write wins (as before).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar
from uuid import UUID

import msgspec
import psycopg
from litestar import Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, HeaderParameter, RequestBody

from flowstudio.api.access import (
    access_of,
    endpoint_name_problem,
    flow_row,
    flow_with_access,
    forbid_shared_edit,
    viewable_flow,
)
from flowstudio.api.deps import CurrentUser, RequestConn, User, requires
from flowstudio.api.errors import Problem, conflict, found, invalid, rejected
from flowstudio.api.node_access import check_code_nodes, with_availability
from flowstudio.flows.validate import FlowError, FlowLimits, validate_definition
from flowstudio.nodes.registry import catalogue
from flowstudio.offload import run_cpu
from flowstudio.settings import Settings
from flowstudio.store import flows as store
from flowstudio.store.db import Conn

log = logging.getLogger(__name__)
SLOW_VALIDATION_S = 0.05
Access = Literal["owner", "admin", "run", "view"]  # api/access.py `access_of`
# The optional `If-Match` request header of PUT (`base_version_of` reads it); declared by its HTTP
# name, as Litestar 2.25 wants header parameters (`HeaderParameter(name=...)`).
IfMatch: TypeAlias = Annotated[str | None, HeaderParameter(name="If-Match")]


class FlowIn(msgspec.Struct, kw_only=True):
    name: str
    definition: dict[str, Any]
    description: str = ""
    endpoint_name: str | None = None


class FlowPatch(msgspec.Struct, kw_only=True):
    name: str | None = None
    description: str | None = None
    definition: dict[str, Any] | None = None
    endpoint_name: str | msgspec.UnsetType | None = msgspec.UNSET  # null clears the name
    base_version: int | None = None  # optimistic concurrency: the version this edit is based on


class FlowOut(msgspec.Struct, kw_only=True):
    """A flow row (`store.flows.FLOW_COLS`); the definition is the canvas's free-form JSON."""

    id: UUID
    owner_id: UUID
    name: str
    description: str
    definition: dict[str, Any]
    version: int
    published_version: int | None
    endpoint_name: str | None
    created_at: datetime
    updated_at: datetime


class FlowWithAccess(FlowOut, kw_only=True):
    access: Access | None  # the caller's access (api/access.py); None never reaches a caller


class FlowVersionSummary(msgspec.Struct, kw_only=True):
    version: int
    created_at: datetime
    created_by: UUID | None


class PortOut(msgspec.Struct, kw_only=True):
    name: str
    type: str


class NodeTypeOut(msgspec.Struct, kw_only=True):
    """One catalogue entry (`nodes.registry.catalogue` + `node_access.with_availability`)."""

    type: str
    title: str
    category: str
    description: str
    params_schema: dict[str, Any]  # the params' JSON Schema (the designer's form)
    inputs: list[PortOut]
    outputs: list[PortOut]
    cpu_bound: bool
    dynamic_outputs: bool  # the router: output ports are params.routes[].name + params.default
    available: bool
    unavailable_reason: str | None


F = TypeVar("F", bound=FlowOut)


def flow_as(cls: type[F], row: dict[str, Any], **extra: Any) -> F:
    """The flow row as `cls`, a FlowOut subclass whose extra fields are in `extra`."""
    return msgspec.convert({**row, **extra}, cls)


def flow_out(row: dict[str, Any]) -> FlowOut:
    return flow_as(FlowOut, row)


class StaleVersion(Exception):
    """Raised inside the update transaction (so it rolls back) when the flow moved past the base."""

    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__("stale base_version")
        self.current = current


def base_version_of(data: FlowPatch, if_match: str | None) -> int | None:
    """The base version from the body, else `If-Match: "3"` (or W/"3", or 3); None = no check."""
    if data.base_version is not None or not if_match or if_match.strip() == "*":
        return data.base_version
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise invalid(
            "header.If-Match", "must be a version number", "If-Match must be a flow version number"
        )
    return int(tag)


def version_conflict(current: dict[str, Any], base: int) -> Problem:
    return Problem(
        409,
        "Conflict",
        f"the flow changed since version {base}: it is now at version {current['version']}",
        errors=[{"path": "body.base_version", "reason": "stale: the flow has a newer version"}],
        current_version=current["version"],
        updated_at=current["updated_at"].isoformat(),
    )


def _sized_validation(
    definition: dict[str, Any], limits: FlowLimits, max_bytes: int
) -> tuple[int, list[FlowError]]:
    started = time.perf_counter()
    size = len(msgspec.json.encode(definition))
    if size > max_bytes:
        reason = f"definition is {size} bytes of JSON; at most {max_bytes}"
        return size, [FlowError(path="body.definition", reason=reason)]
    errors = validate_definition(definition, limits)[1]
    elapsed = time.perf_counter() - started
    if elapsed >= SLOW_VALIDATION_S:
        log.info("validated a flow definition of %d bytes in %.3f s", size, elapsed)
    return size, errors


async def check_definition(definition: dict[str, Any], settings: Settings) -> None:
    limits = FlowLimits(max_nodes=settings.flow_max_nodes, max_edges=settings.flow_max_edges)
    size, errors = await run_cpu(_sized_validation, definition, limits, settings.flow_max_bytes)
    if size > settings.flow_max_bytes:
        raise rejected(msgspec.to_builtins(errors), status=413)
    if errors:
        raise rejected(msgspec.to_builtins(errors), title="Invalid flow definition")


def check_name(name: str) -> None:
    if not name.strip() or len(name) > 200:
        raise invalid("body.name", "must be 1-200 characters", "name must be 1-200 characters")


def check_endpoint_name(name: str | None) -> None:
    reason = endpoint_name_problem(name) if name is not None else None
    if reason:
        raise invalid("body.endpoint_name", reason, f"endpoint_name {reason}")


def endpoint_name_taken(name: str | None) -> Problem:
    return conflict(
        f"you already have a flow with endpoint_name {name!r}",
        path="body.endpoint_name",
        reason="already used by another of your flows",
    )


async def owned_flow(conn: Conn, user: User, flow_id: UUID) -> dict[str, Any]:
    flow, access = await flow_with_access(conn, user, flow_id)
    forbid_shared_edit(access)
    return flow


@post("/api/v1/flows", status_code=201, guards=[requires("flows:write")])
async def create_flow(
    data: RequestBody[FlowIn], user: CurrentUser, conn: RequestConn, state: State
) -> FlowOut:
    return await create_owned_flow(data, user, conn, state)


async def create_owned_flow(data: FlowIn, user: User, conn: Conn, state: State) -> FlowOut:
    """Validate and store a new flow (version 1); also the import route's path."""
    check_name(data.name)
    check_endpoint_name(data.endpoint_name)
    await check_definition(data.definition, state.settings)
    await check_code_nodes(data.definition, user, state)
    try:
        row = await store.create_flow(
            conn,
            owner_id=user.id,
            name=data.name,
            description=data.description,
            definition=data.definition,
            endpoint_name=data.endpoint_name,
        )
    except psycopg.errors.UniqueViolation as exc:
        raise endpoint_name_taken(data.endpoint_name) from exc
    return flow_out(row)


@get("/api/v1/flows", guards=[requires("flows:read")])
async def list_flows(user: CurrentUser, conn: RequestConn) -> list[FlowWithAccess]:
    out = []
    for row in await store.list_visible_flows(conn, user.id, user.is_admin):
        flow, access = flow_row(row), access_of(user, row)
        out.append(flow_as(FlowWithAccess, flow, access=access))
    return out


@get("/api/v1/flows/{flow_id:uuid}", guards=[requires("flows:read")])
async def get_flow(flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> FlowWithAccess:
    flow, access = await viewable_flow(conn, user, flow_id)
    return flow_as(FlowWithAccess, flow, access=access)


@put("/api/v1/flows/{flow_id:uuid}", guards=[requires("flows:write")])
async def update_flow(
    flow_id: FromPath[UUID],
    data: RequestBody[FlowPatch],
    user: CurrentUser,
    conn: RequestConn,
    state: State,
    if_match: IfMatch = None,
) -> FlowOut:
    base = base_version_of(data, if_match)
    await owned_flow(conn, user, flow_id)
    if data.name is not None:
        check_name(data.name)
    if data.definition is not None:
        await check_definition(data.definition, state.settings)
        await check_code_nodes(data.definition, user, state)
    rename = data.endpoint_name is not msgspec.UNSET
    endpoint_name = data.endpoint_name if isinstance(data.endpoint_name, str) else None
    check_endpoint_name(endpoint_name)
    try:
        async with conn.transaction():
            if rename:
                await store.set_endpoint_name(conn, flow_id, endpoint_name)
            row = await store.update_flow(
                conn,
                flow_id,
                user_id=user.id,
                name=data.name,
                description=data.description,
                definition=data.definition,
                base_version=base,
            )
            current = await store.get_flow(conn, flow_id) if row is None else None
            if current is not None and base is not None:
                raise StaleVersion(current)  # rolls the rename back too
    except psycopg.errors.UniqueViolation as exc:
        raise endpoint_name_taken(endpoint_name) from exc
    except StaleVersion as exc:
        raise version_conflict(exc.current, base or 0) from None
    return flow_out(found(row, "flow"))


@delete("/api/v1/flows/{flow_id:uuid}", status_code=204, guards=[requires("flows:write")])
async def delete_flow(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    await owned_flow(conn, user, flow_id)
    await store.delete_flow(conn, flow_id)
    return Response(None, status_code=204)


@get("/api/v1/flows/{flow_id:uuid}/versions", guards=[requires("flows:read")])
async def list_versions(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> list[FlowVersionSummary]:
    await owned_flow(conn, user, flow_id)
    return msgspec.convert(await store.list_versions(conn, flow_id), list[FlowVersionSummary])


@get("/api/v1/nodes")
async def node_catalogue(state: State) -> list[NodeTypeOut]:
    items = await with_availability(catalogue(), state.settings)
    return msgspec.convert(items, list[NodeTypeOut])


ROUTES = [
    create_flow,
    list_flows,
    get_flow,
    update_flow,
    delete_flow,
    list_versions,
    node_catalogue,
]
