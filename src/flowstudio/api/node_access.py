"""Node types a caller may save, and the catalogue's availability fields.

`check_code_nodes(definition, user, state)` is called by every route that saves a definition
(create, update, import, duplicate, restore) right after `check_definition`: a `code` node is
refused with 422 where CODE_NODE/the sandbox probe make it unavailable, and with 403 when the caller
lacks `nodes:code`; each error names the node id and path (sandbox/policy.py decides).
`with_availability(items, settings)` adds `available` / `unavailable_reason` to each catalogue item.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State

from flowstudio.api.deps import User
from flowstudio.api.errors import Problem
from flowstudio.sandbox.policy import availability, definition_problems


async def check_code_nodes(definition: Any, user: User, state: State) -> None:
    status, errors = await definition_problems(definition, user.permissions, state.settings)
    if errors:
        title = "Forbidden" if status == 403 else "Invalid flow definition"
        raise Problem(status, title, errors[0]["reason"], errors=errors)


async def with_availability(items: list[dict[str, Any]], settings: Any) -> list[dict[str, Any]]:
    out = []
    for item in items:
        available, reason = await availability(item["type"], settings)
        out.append({**item, "available": available, "unavailable_reason": reason})
    return out
