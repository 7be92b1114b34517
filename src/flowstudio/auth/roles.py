"""Roles and the permissions they grant; the API's guards and `/api/auth/me` read this one table."""

from __future__ import annotations

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "flows:read",
            "flows:write",
            "runs:read",
            "runs:write",
            "keys:write",
            "secrets:write",
            "users:admin",
            "ops:read",
        }
    ),
    "editor": frozenset(
        {
            "flows:read",
            "flows:write",
            "runs:read",
            "runs:write",
            "keys:write",
            "secrets:write",
            "ops:read",
        }
    ),
    "runner": frozenset({"flows:read", "runs:read", "runs:write", "keys:write"}),
    "viewer": frozenset({"flows:read", "runs:read"}),
}


def permissions_of(roles: list[str]) -> list[str]:
    perms: set[str] = set()
    for role in roles:
        perms |= ROLES.get(role, frozenset())
    return sorted(perms)
