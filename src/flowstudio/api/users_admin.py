"""Admin routes for users' extra permissions (e.g. `nodes:code`), persisted in `users`.

`GET /api/v1/users` lists users with their roles, granted permissions and effective permissions;
`PUT` / `DELETE /api/v1/users/{id}/permissions/{permission}` grant or revoke one permission. All
need `users:admin` (the admin role; one guard on the router). Only permissions some role defines
are grantable, except `users:admin` itself (being an admin stays a role): others answer 422 with
the path. A grant takes
effect on the user's next request; a revoke also stops runs of flow versions that user saved with a
code node (sandbox/policy.py re-checks the author at run time).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Router, delete, get, put
from litestar.params import FromPath

from flowstudio.api.deps import CurrentUser, RequestConn, User, requires
from flowstudio.api.errors import found, invalid
from flowstudio.auth.roles import GRANTABLE, permissions_of
from flowstudio.store import users as store
from flowstudio.store.db import Conn


class UserOut(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    roles: list[str]
    granted_permissions: list[str]
    permissions: list[str]


def user_out(row: dict[str, Any]) -> UserOut:
    granted = list(row["granted_permissions"] or [])
    return UserOut(
        id=str(row["id"]),
        email=row["email"],
        name=row["name"],
        roles=list(row["roles"]),
        granted_permissions=granted,
        permissions=permissions_of(row["roles"], granted),
    )


def check_grantable(permission: str) -> None:
    if permission not in GRANTABLE:
        raise invalid(
            "path.permission",
            f"must be one of {', '.join(sorted(GRANTABLE))}",
            f"{permission!r} cannot be granted",
        )


@get("/")
async def list_users(user: CurrentUser, conn: RequestConn) -> list[UserOut]:
    return [user_out(row) for row in await store.list_users(conn)]


async def _set(user: User, conn: Conn, user_id: UUID, permission: str, granted: bool) -> UserOut:
    check_grantable(permission)
    row = found(await store.set_granted_permission(conn, user_id, permission, granted), "user")
    return user_out(row)


@put("/{user_id:uuid}/permissions/{permission:str}")
async def grant_permission(
    user_id: FromPath[UUID], permission: FromPath[str], user: CurrentUser, conn: RequestConn
) -> UserOut:
    return await _set(user, conn, user_id, permission, True)


@delete("/{user_id:uuid}/permissions/{permission:str}", status_code=200)
async def revoke_permission(
    user_id: FromPath[UUID], permission: FromPath[str], user: CurrentUser, conn: RequestConn
) -> UserOut:
    return await _set(user, conn, user_id, permission, False)


# one guard for the whole controller: every route here is the admin's
ROUTES = [
    Router(
        "/api/v1/users",
        guards=[requires("users:admin")],
        route_handlers=[list_users, grant_permission, revoke_permission],
    )
]
