"""Roles and the permissions they grant; the API's guards and `/api/auth/me` read this one table.

`nodes:code` (use the `code` node) is the admin's; admins grant it (or any permission listed here)
to other users, who then hold `permissions_of(roles, granted)`.
"""

from __future__ import annotations

EDITOR = frozenset(
    {
        "flows:read",
        "flows:write",
        "runs:read",
        "runs:write",
        "keys:write",
        "secrets:write",
        "ops:read",
    }
)
ROLES: dict[str, frozenset[str]] = {
    "admin": EDITOR | {"users:admin", "nodes:code"},  # an admin may do all an editor may, and more
    "editor": EDITOR,
    "runner": frozenset({"flows:read", "runs:read", "runs:write", "keys:write"}),
    "viewer": frozenset({"flows:read", "runs:read"}),
}


CODE_PERMISSION = "nodes:code"
GRANTABLE = frozenset().union(*ROLES.values()) - {"users:admin"}  # admin stays a role


def permissions_of(roles: list[str], granted: list[str] | None = None) -> list[str]:
    perms: set[str] = {p for p in granted or () if p in GRANTABLE}
    for role in roles:
        perms |= ROLES.get(role, frozenset())
    return sorted(perms)
