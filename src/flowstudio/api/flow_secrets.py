"""Which secrets a flow uses, and which of them its owner lets it use when someone else runs it.

The model (see README "Security model -> secrets"): a run reads the secrets of the FLOW's owner,
never those of the user who starts it. When they differ (a flow shared for running, an admin's run),
only the names the owner bound to the flow are loaded (`worker/secret_values.py`); the runner's own
secrets never reach a template they do not own.
- `GET /api/v1/flows/{id}/secrets` (anyone who sees the flow): the secret names the flow's templates
  use (the published version for a shared user, the latest for the owner) and the bound ones. Names
  only, never values: a shared user reviews this before accepting a new version.
- `PUT /api/v1/flows/{id}/secrets/{name}` (owner or admin): bind one of the owner's secrets (422 when
  the owner has no secret of that name); `DELETE` unbinds it.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import msgspec
from litestar import Response, Router, delete, get, put
from litestar.params import FromPath

from flowstudio.api.access import EDIT_ACCESS, viewable_flow
from flowstudio.api.deps import CurrentUser, RequestConn, requires
from flowstudio.api.errors import invalid, not_found
from flowstudio.api.flows import owned_flow
from flowstudio.engine.flowcache import load_graph
from flowstudio.nodes import registry
from flowstudio.store import secrets as secret_store
from flowstudio.store import shares as store
from flowstudio.store.db import Conn
from flowstudio.worker.secret_values import secret_names_in

SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class FlowSecretsOut(msgspec.Struct, kw_only=True):
    version: int | None
    used: list[str]  # names the version's templates reference
    bound: list[str]  # names the owner lets the flow use when another user runs it


class BindingOut(msgspec.Struct, kw_only=True):
    flow_id: str
    name: str


async def used_secret_names(conn: Conn, flow_id: Any, version: int) -> list[str]:
    graph = await load_graph(conn, flow_id, version)
    names: set[str] = set()
    for node in graph.nodes.values():
        spec = registry.get(node.type)
        if spec is not None:
            names |= secret_names_in(node.data.params, spec)
    return sorted(names)


@get("/", guards=[requires("flows:read")])
async def flow_secrets(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> FlowSecretsOut:
    flow, access = await viewable_flow(conn, user, flow_id)
    version = flow["version"] if access in EDIT_ACCESS else flow["published_version"]
    used = [] if version is None else await used_secret_names(conn, flow_id, version)
    return FlowSecretsOut(
        version=version, used=used, bound=await store.bound_secrets(conn, flow_id)
    )


def _name_problem(name: str) -> None:
    if not SECRET_NAME.fullmatch(name):
        raise invalid(
            "path.name", "must match ^[A-Za-z_][A-Za-z0-9_]{0,63}$", "invalid secret name"
        )


@put("/{name:str}", status_code=201, guards=[requires("flows:write")])
async def bind_flow_secret(
    flow_id: FromPath[UUID], name: FromPath[str], user: CurrentUser, conn: RequestConn
) -> Response[BindingOut]:
    flow = await owned_flow(conn, user, flow_id)
    _name_problem(name)
    if not await secret_store.load_secrets(conn, str(flow["owner_id"]), [name]):
        raise invalid(
            "path.name",
            "no such secret of the flow's owner",
            f"the flow's owner has no secret {name!r}",
        )
    created = await store.bind_secret(conn, flow_id, name, user.id)
    return Response(
        BindingOut(flow_id=str(flow_id), name=name), status_code=201 if created else 200
    )


@delete("/{name:str}", status_code=204, guards=[requires("flows:write")])
async def unbind_flow_secret(
    flow_id: FromPath[UUID], name: FromPath[str], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    await owned_flow(conn, user, flow_id)
    if not await store.unbind_secret(conn, flow_id, name):
        raise not_found("secret binding")
    return Response(None, status_code=204)


ROUTES = [
    Router(
        "/api/v1/flows/{flow_id:uuid}/secrets",
        route_handlers=[flow_secrets, bind_flow_secret, unbind_flow_secret],
    )
]
