"""Node types a caller may save, and the catalogue's availability fields.

`check_code_nodes(definition, user, state)` is called by every route that saves a definition
(create, update, import, duplicate, restore) right after `check_definition`: a `code` node is
refused with 422 where CODE_NODE/the sandbox probe make it unavailable, and with 403 when the caller
lacks `nodes:code`; each error names the node id and path (sandbox/policy.py decides).
`check_code_tweaks` refuses (403) run tweaks of a code node from a caller without `nodes:code`.
`with_availability(items, settings)` adds `available` / `unavailable_reason` to each catalogue item.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State

from flowstudio.api.deps import User
from flowstudio.api.errors import rejected
from flowstudio.sandbox.policy import (
    CODE_TYPE,
    availability,
    code_tweak_problems,
    definition_problems,
)


async def check_code_nodes(definition: Any, user: User, state: State) -> None:
    status, errors = await definition_problems(definition, user.permissions, state.settings)
    if errors:
        title = "Forbidden" if status == 403 else "Invalid flow definition"
        raise rejected(errors, status=status, title=title)


def check_code_tweaks(definition: Any, tweaks: Any, user: User) -> None:
    """`definition`: the pinned version's FlowDefinition; a tweak of a code node needs nodes:code."""
    ids = [n.id for n in definition.nodes if n.type == CODE_TYPE]
    errors = code_tweak_problems(ids, tweaks, user.permissions)
    if errors:
        raise rejected(errors, status=403)


async def with_availability(items: list[dict[str, Any]], settings: Any) -> list[dict[str, Any]]:
    out = []
    for item in items:
        available, reason = await availability(item["type"], settings)
        out.append({**item, "available": available, "unavailable_reason": reason})
    return out
