"""Flow sharing routes: share a flow with another user by email, list its shares, remove one.

Only the flow's owner or an admin manages shares (`api.flows.owned_flow`: a user the flow is shared
with gets 403, anyone else 404). `share_flow` finds the user by email (`store.users.user_by_email`)
and upserts the row (`store.shares.upsert_share`). Its answer is the same for an unknown email and a
known one (202 `ShareAccepted`: the email and permission as sent), so the form cannot tell whether
an account exists; the owner sees effective shares in the list. A shared user may also remove their
own share (leave the flow). A share is granted for the version published when it is made
(`version`); after the owner publishes another one, the shared user runs nothing until the owner
shares again or the user accepts it (`accept_share`, after reviewing the secret names it uses:
`api/flow_secrets.py`). What a share grants is decided in `api/access.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Response, delete, get, post
from litestar.params import FromPath, RequestBody

from flowstudio.api.access import flow_with_access
from flowstudio.api.deps import CurrentUser, RequestConn, authenticated, require, requires
from flowstudio.api.errors import conflict, found, invalid, not_found
from flowstudio.api.flows import owned_flow
from flowstudio.api.rows import row_as
from flowstudio.store import shares as store
from flowstudio.store import users


class ShareIn(msgspec.Struct, kw_only=True):
    email: str
    permission: Literal["run", "view"] = "run"


class ShareAccepted(msgspec.Struct, kw_only=True):
    flow_id: str
    email: str
    permission: str
    # the published version a share made now grants (the owner's own flow: no oracle about the
    # email); None while the flow is unpublished: a shared user runs nothing until it is
    version: int | None = None
    status: str = "accepted"


class ShareOut(msgspec.Struct, kw_only=True):
    flow_id: str
    user_id: str
    email: str
    name: str
    permission: str
    version: int | None  # the published version this share was granted or accepted for
    created_at: datetime
    updated_at: datetime


def share_out(row: dict[str, Any]) -> ShareOut:
    return row_as(ShareOut, row)


@post("/api/v1/flows/{flow_id:uuid}/shares", status_code=202, guards=[requires("flows:write")])
async def share_flow(
    flow_id: FromPath[UUID], data: RequestBody[ShareIn], user: CurrentUser, conn: RequestConn
) -> ShareAccepted:
    flow = await owned_flow(conn, user, flow_id)
    email = data.email.strip()
    if not email or "@" not in email or len(email) > 320:
        raise invalid("body.email", "not an email address")
    if email.lower() == user.email.lower():
        raise invalid("body.email", "is your own email", "you already have every right on the flow")
    target = await users.user_by_email(conn, email)
    if target is not None and str(target["id"]) != str(flow["owner_id"]):
        await store.upsert_share(conn, flow_id, target["id"], data.permission, user.id)
    return ShareAccepted(
        flow_id=str(flow_id),
        email=email,
        permission=data.permission,
        version=flow.get("published_version"),
    )


@get("/api/v1/flows/{flow_id:uuid}/shares", guards=[requires("flows:read")])
async def list_shares(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> list[ShareOut]:
    await owned_flow(conn, user, flow_id)
    return [share_out(r) for r in await store.list_shares(conn, flow_id)]


@post("/api/v1/flows/{flow_id:uuid}/shares/accept", status_code=200, guards=[authenticated])
async def accept_share(flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> ShareOut:
    """The caller accepts the flow's published version for the share the owner gave them."""
    flow, _ = await flow_with_access(conn, user, flow_id)
    if await store.get_share(conn, flow_id, user.id) is None:
        raise not_found("share")
    if flow["published_version"] is None:
        raise conflict("the owner has not published this flow")
    row = found(await store.accept_share(conn, flow_id, user.id), "share")
    return share_out(row)


@delete(
    "/api/v1/flows/{flow_id:uuid}/shares/{user_id:uuid}", status_code=204, guards=[authenticated]
)
async def unshare_flow(
    flow_id: FromPath[UUID], user_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    if str(user_id) == user.id:  # leaving a flow shared with me
        await flow_with_access(conn, user, flow_id)
    else:
        require(user, "flows:write")
        await owned_flow(conn, user, flow_id)
    if not await store.delete_share(conn, flow_id, user_id):
        raise not_found("share")
    return Response(None, status_code=204)


ROUTES = [share_flow, list_shares, accept_share, unshare_flow]
