"""Flow routes beyond CRUD: restore an old version, duplicate, export and import.

`restore_version` reads the old immutable version (`store.get_version`), re-validates it (node types
may have changed since) and saves it as a NEW version via `store.update_flow`, so history is never
rewritten. `duplicate_flow` and `import_flow` create a new flow owned by the caller through
`store.create_flow` after the same checks as `flows.create_flow`; `export_flow` returns the
`{"name","description","definition"}` shape that `import_flow` accepts. Other users' flows answer
404. Every path that saves a definition also passes `node_access.check_code_nodes`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, RequestBody

from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, requires
from flowstudio.api.errors import decode_optional_body, found, not_found
from flowstudio.api.flows import (
    FlowIn,
    FlowOut,
    check_definition,
    check_name,
    create_owned_flow,
    flow_as,
    owned_flow,
)
from flowstudio.api.node_access import check_code_nodes
from flowstudio.store import flows as store


class DuplicateIn(msgspec.Struct, kw_only=True):
    name: str | None = None


class FlowExport(msgspec.Struct, kw_only=True):
    name: str
    description: str
    definition: dict[str, Any]


class FlowRestored(FlowOut, kw_only=True):
    restored_from: int  # the old version whose definition became the new one


class FlowDuplicated(FlowOut, kw_only=True):
    duplicated_from: UUID


@post(
    "/api/v1/flows/{flow_id:uuid}/versions/{version:int}/restore",
    status_code=200,
    guards=[requires("flows:write")],
)
async def restore_version(
    flow_id: FromPath[UUID],
    version: FromPath[int],
    user: CurrentUser,
    conn: RequestConn,
    state: State,
) -> FlowRestored:
    await owned_flow(conn, user, flow_id)
    old = found(await store.get_version(conn, flow_id, version), f"version {version} of the flow")
    await check_definition(old["definition"], state.settings)
    await check_code_nodes(old["definition"], user, state)
    row = await store.update_flow(
        conn, flow_id, user_id=user.id, name=None, description=None, definition=old["definition"]
    )
    if row is None:
        raise not_found("flow")
    return flow_as(FlowRestored, row, restored_from=version)


@post("/api/v1/flows/{flow_id:uuid}/duplicate", status_code=201, guards=[requires("flows:write")])
async def duplicate_flow(
    flow_id: FromPath[UUID], request: AnyRequest, user: CurrentUser, conn: RequestConn, state: State
) -> FlowDuplicated:
    data = decode_optional_body(await request.body(), DuplicateIn)
    flow = await owned_flow(conn, user, flow_id)
    name = data.name if data.name is not None else f"{flow['name']} (copy)"[:200]
    check_name(name)
    await check_code_nodes(flow["definition"], user, state)
    row = await store.create_flow(
        conn,
        owner_id=user.id,
        name=name,
        description=flow["description"],
        definition=flow["definition"],
    )
    return flow_as(FlowDuplicated, row, duplicated_from=flow_id)


@get("/api/v1/flows/{flow_id:uuid}/export", guards=[requires("flows:read")])
async def export_flow(
    flow_id: FromPath[UUID],
    user: CurrentUser,
    conn: RequestConn,
    version: FromQuery[int | None] = None,
) -> FlowExport:
    flow = await owned_flow(conn, user, flow_id)
    definition = flow["definition"]
    if version is not None:
        old = found(
            await store.get_version(conn, flow_id, version), f"version {version} of the flow"
        )
        definition = old["definition"]
    return FlowExport(name=flow["name"], description=flow["description"], definition=definition)


@post("/api/v1/flows/import", status_code=201, guards=[requires("flows:write")])
async def import_flow(
    data: RequestBody[FlowIn], user: CurrentUser, conn: RequestConn, state: State
) -> FlowOut:
    return await create_owned_flow(data, user, conn, state)


ROUTES = [restore_version, duplicate_flow, export_flow, import_flow]
