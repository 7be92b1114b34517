"""Draft vs published (Dify's model): the canvas saves drafts as new versions; publishing pins one.

`publish_flow` checks edit access (`api.flows.owned_flow`: owner or admin; shared users 403, others
404), checks that the version exists and stores it via `store.flows.set_published`; `unpublish_flow`
clears it. `api.runs.start_flow_run` then runs `published_version` when a caller names no version
(never-published flows keep running their latest version).
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import post
from litestar.params import FromPath

from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, requires
from flowstudio.api.errors import found, invalid
from flowstudio.api.flow_extras import decode_optional_body
from flowstudio.api.flows import FlowOut, flow_out, owned_flow
from flowstudio.store import flows as store


class PublishIn(msgspec.Struct, kw_only=True):
    version: int | None = None  # default: the flow's current (latest) version


@post("/api/v1/flows/{flow_id:uuid}/publish", status_code=200, guards=[requires("flows:write")])
async def publish_flow(
    flow_id: FromPath[UUID], request: AnyRequest, user: CurrentUser, conn: RequestConn
) -> FlowOut:
    data = decode_optional_body(await request.body(), PublishIn)
    flow = await owned_flow(conn, user, flow_id)
    version = flow["version"] if data.version is None else data.version
    if not 1 <= version <= flow["version"]:
        raise invalid("body.version", "no such version", f"flow has no version {version}")
    row = found(await store.set_published(conn, flow_id, version), "flow")
    return flow_out(row)


@post("/api/v1/flows/{flow_id:uuid}/unpublish", status_code=200, guards=[requires("flows:write")])
async def unpublish_flow(flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> FlowOut:
    await owned_flow(conn, user, flow_id)
    row = found(await store.set_published(conn, flow_id, None), "flow")
    return flow_out(row)


ROUTES = [publish_flow, unpublish_flow]
