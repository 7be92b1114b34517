"""Flow routes: create/list/get/update/delete, versions, and the node catalogue.

Definitions are validated by `flows/validate.py` before anything is written: a bad one answers 422 with
each problem's path, node id and reason. Ownership: only the owner (or an admin) sees a flow; others
get 404.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
import psycopg
from litestar import Response, delete, get, post, put

from flowstudio.api.deps import User, can_see, require
from flowstudio.api.errors import Problem, not_found
from flowstudio.flows.validate import validate_definition
from flowstudio.nodes.registry import catalogue
from flowstudio.store import flows as store


class FlowIn(msgspec.Struct, kw_only=True):
    name: str
    definition: dict[str, Any]
    description: str = ""


class FlowPatch(msgspec.Struct, kw_only=True):
    name: str | None = None
    description: str | None = None
    definition: dict[str, Any] | None = None


def check_definition(definition: dict[str, Any]) -> None:
    _, errors = validate_definition(definition)
    if errors:
        raise Problem(
            422,
            "Invalid flow definition",
            errors[0].reason,
            errors=[msgspec.to_builtins(e) for e in errors],
        )


def check_name(name: str) -> None:
    if not name.strip() or len(name) > 200:
        raise Problem(
            422,
            "Unprocessable Content",
            "name must be 1-200 characters",
            errors=[{"path": "body.name", "reason": "must be 1-200 characters"}],
        )


def flow_out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "id": str(row["id"]), "owner_id": str(row["owner_id"])}


async def owned_flow(
    conn: psycopg.AsyncConnection[Any], user: User, flow_id: UUID
) -> dict[str, Any]:
    flow = await store.get_flow(conn, flow_id)
    if flow is None or not can_see(user, flow["owner_id"]):
        raise not_found("flow")
    return flow


@post("/api/v1/flows", status_code=201)
async def create_flow(
    data: FlowIn, user: User, conn: psycopg.AsyncConnection[Any]
) -> dict[str, Any]:
    require(user, "flows:write")
    check_name(data.name)
    check_definition(data.definition)
    row = await store.create_flow(
        conn,
        owner_id=user.id,
        name=data.name,
        description=data.description,
        definition=data.definition,
    )
    return flow_out(row)


@get("/api/v1/flows")
async def list_flows(user: User, conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    require(user, "flows:read")
    rows = await store.list_flows(conn, None if user.is_admin else user.id)
    return [flow_out(r) for r in rows]


@get("/api/v1/flows/{flow_id:uuid}")
async def get_flow(flow_id: UUID, user: User, conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    require(user, "flows:read")
    return flow_out(await owned_flow(conn, user, flow_id))


@put("/api/v1/flows/{flow_id:uuid}")
async def update_flow(
    flow_id: UUID, data: FlowPatch, user: User, conn: psycopg.AsyncConnection[Any]
) -> dict[str, Any]:
    require(user, "flows:write")
    await owned_flow(conn, user, flow_id)
    if data.name is not None:
        check_name(data.name)
    if data.definition is not None:
        check_definition(data.definition)
    row = await store.update_flow(
        conn,
        flow_id,
        user_id=user.id,
        name=data.name,
        description=data.description,
        definition=data.definition,
    )
    if row is None:
        raise not_found("flow")
    return flow_out(row)


@delete("/api/v1/flows/{flow_id:uuid}", status_code=204)
async def delete_flow(
    flow_id: UUID, user: User, conn: psycopg.AsyncConnection[Any]
) -> Response[None]:
    require(user, "flows:write")
    await owned_flow(conn, user, flow_id)
    await store.delete_flow(conn, flow_id)
    return Response(None, status_code=204)


@get("/api/v1/flows/{flow_id:uuid}/versions")
async def list_versions(
    flow_id: UUID, user: User, conn: psycopg.AsyncConnection[Any]
) -> list[dict[str, Any]]:
    require(user, "flows:read")
    await owned_flow(conn, user, flow_id)
    return [
        {**r, "created_by": str(r["created_by"]) if r["created_by"] else None}
        for r in await store.list_versions(conn, flow_id)
    ]


@get("/api/v1/nodes")
async def node_catalogue() -> list[dict[str, Any]]:
    return catalogue()


ROUTES = [
    create_flow,
    list_flows,
    get_flow,
    update_flow,
    delete_flow,
    list_versions,
    node_catalogue,
]
