"""Who may do what with a flow: the one place that combines roles, ownership and shares.

`flow_with_access(conn, user, flow_id)` reads the flow with the caller's share in one query and
names the caller's `access` ('owner' | 'admin' | 'run' | 'view' | None). Routes then call
`viewable_flow` (GET/list: owner, admin, any share), `runnable_flow` (start a run: owner, admin or a
'run' share, plus the runs:write permission) or `api.flows.owned_flow` (edit: owner or admin only).
A flow the caller cannot see at all is 404 (never a hint it exists); a visible flow with a forbidden
action is 403. `run_version` pins the version a run uses: the owner (or an admin) any version (the
named one, else the published one, else the latest); a shared user only the published version, and
only while it is the version their share was granted or accepted for (409 otherwise, saying how to
accept). `recheck_run_grant` applies the same rule again when a run is resumed, forked or signalled
(the flow must still exist; a shared user's share must still allow running). `resolve_flow_ref`
turns a path's UUID or the caller's endpoint name into a flow id (sync run, webhook, OpenAI
`model`). `deps.can_see` stays the owner/admin rule for runs and others.
An API key scoped to one flow (`User.flow_scope`) finds every other flow missing (404) here.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from flowstudio.api.deps import User, can_see
from flowstudio.api.errors import conflict, forbidden, found, invalid, not_found
from flowstudio.store import flows as store
from flowstudio.store import shares
from flowstudio.store.db import Conn

ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
EDIT_ACCESS = ("owner", "admin")


def access_of(user: User, flow: dict[str, Any]) -> str | None:
    if str(flow["owner_id"]) == user.id:
        return "owner"
    if can_see(user, flow["owner_id"]):
        return "admin"
    permission = flow.get("share_permission")
    return str(permission) if permission else None


def can_view_flow(access: str | None) -> bool:
    return access is not None


def can_run_flow(user: User, access: str | None) -> bool:
    return "runs:write" in user.permissions and access in (*EDIT_ACCESS, "run")


def flow_row(flow: dict[str, Any]) -> dict[str, Any]:
    """The flow without the caller-specific join column."""
    return {k: v for k, v in flow.items() if k != "share_permission"}


async def flow_with_access(
    conn: Conn, user: User, flow_id: UUID
) -> tuple[dict[str, Any], str | None]:
    if user.flow_scope is not None and user.flow_scope != str(flow_id):
        raise not_found("flow")  # a `run:flow:` API key sees its one flow only
    flow = found(await store.get_flow_for(conn, flow_id, user.id), "flow")
    return flow_row(flow), access_of(user, flow)


async def viewable_flow(conn: Conn, user: User, flow_id: UUID) -> tuple[dict[str, Any], str]:
    flow, access = await flow_with_access(conn, user, flow_id)
    if access is None or not can_view_flow(access):
        raise not_found("flow")
    return flow, access


async def runnable_flow(conn: Conn, user: User, flow_id: UUID) -> tuple[dict[str, Any], str]:
    flow, access = await viewable_flow(conn, user, flow_id)
    if not can_run_flow(user, access):
        raise forbidden("this flow is shared with you for viewing only")
    return flow, access


def forbid_shared_edit(access: str | None) -> None:
    """Visible through a share but not the caller's: 403; invisible: 404."""
    if access is None:
        raise not_found("flow")
    if access not in EDIT_ACCESS:
        raise forbidden("only the flow's owner can change it")


def endpoint_name_problem(name: str) -> str | None:
    """Why `name` cannot be an endpoint name, or None. A name that parses as a UUID would be
    ambiguous with flow ids in the same path segment, so it is refused."""
    if not ENDPOINT_NAME.match(name):
        return "must match ^[a-z0-9][a-z0-9_-]{0,62}$"
    try:
        UUID(name)
    except ValueError:
        return None
    return "must not be a UUID"


async def resolve_flow_ref(conn: Conn, user: User, ref: str) -> UUID:
    """A flow id from a UUID or the caller's own endpoint name; 404 when neither fits."""
    try:
        return UUID(ref)
    except ValueError:
        pass
    if endpoint_name_problem(ref) is None:
        flow_id = await store.flow_id_by_endpoint_name(conn, user.id, ref)
        if flow_id is not None:
            return UUID(str(flow_id))
    raise not_found("flow")


def _shared_grant(flow: dict[str, Any], share: dict[str, Any] | None) -> int:
    """The version a 'run' share lets its user run now, or a 409/403 saying why none."""
    if share is None or share["permission"] != "run":
        raise forbidden("this flow is no longer shared with you for running")
    published = flow.get("published_version")
    if published is None:
        raise conflict(
            "the owner has not published this flow; shared users run only its published version"
        )
    if share.get("version") != published:
        granted = share.get("version")
        raise conflict(
            f"version {published} was published after this flow was shared with you"
            f" (for version {granted}); review it (GET /api/v1/flows/{flow['id']}/secrets) and"
            f" accept it (POST /api/v1/flows/{flow['id']}/shares/accept) or ask the owner to"
            " share it again"
        )
    return int(published)


async def run_version(
    conn: Conn,
    user: User,
    flow: dict[str, Any],
    access: str,
    requested: int | None,
    path: str = "body.version",
) -> int:
    """The version a new run of `flow` by `user` pins (see the module comment)."""
    if access in EDIT_ACCESS:
        pinned = int(requested or flow["published_version"] or flow["version"])
    else:
        published = flow.get("published_version")
        if requested is not None and requested != published:
            raise forbidden(
                "shared users run only the published version"
                + (f" ({published})" if published is not None else ""),
                path=path,
                reason="not the published version",
            )
        pinned = _shared_grant(flow, await shares.get_share(conn, flow["id"], user.id))
    if not 1 <= pinned <= flow["version"]:
        raise invalid(path, "no such version", f"flow has no version {pinned}")
    return pinned


async def recheck_run_grant(
    conn: Conn, user: User, run: dict[str, Any], *, same_version: bool
) -> None:
    """Before a run's steps run again (resume, fork) or continue (signal): the flow still exists,
    and for a run of someone else's flow the share still allows running (`same_version`: and the
    run's version is the one the share grants now)."""
    flow = await store.get_flow_for(conn, run["flow_id"], user.id)
    if flow is None:
        raise conflict("the run's flow was deleted; its runs cannot continue")
    if access_of(user, flow) in EDIT_ACCESS:
        return
    granted = _shared_grant(flow, await shares.get_share(conn, run["flow_id"], user.id))
    if same_version and granted != run["flow_version"]:
        raise conflict(
            f"this run is of version {run['flow_version']}; the flow shared with you is now"
            f" version {granted}: start a new run"
        )
