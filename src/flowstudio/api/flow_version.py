"""One immutable version of a flow with its definition: `GET /api/v1/flows/{id}/versions/{version}`.

The designer's replay view opens a past run on the canvas pinned to the run's `flow_version`; this
route reads that version through `store.flows.get_version` after the same ownership check as every
flow route (`api.flows.owned_flow`: other users' flows answer 404).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.params import FromPath

from flowstudio.api.deps import CurrentUser, RequestConn, requires
from flowstudio.api.errors import found
from flowstudio.api.flows import owned_flow
from flowstudio.store import flows as store


class FlowVersionOut(msgspec.Struct, kw_only=True):
    flow_id: str
    version: int
    definition: dict[str, Any]
    created_at: str
    created_by: str | None


@get("/api/v1/flows/{flow_id:uuid}/versions/{version:int}", guards=[requires("flows:read")])
async def get_flow_version(
    flow_id: FromPath[UUID], version: FromPath[int], user: CurrentUser, conn: RequestConn
) -> FlowVersionOut:
    await owned_flow(conn, user, flow_id)
    row = found(await store.get_version(conn, flow_id, version), f"version {version} of the flow")
    return FlowVersionOut(
        flow_id=str(flow_id),
        version=row["version"],
        definition=row["definition"],
        created_at=row["created_at"].isoformat(),
        created_by=str(row["created_by"]) if row["created_by"] else None,
    )


ROUTES = [get_flow_version]
