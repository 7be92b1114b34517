"""Whether a `code` node may be saved or run: the CODE_NODE mode, the sandbox probe, the permission.

`CODE_NODE` (settings.code_node): `sandbox` (default: run only inside bubblewrap; refused where the
probe says the sandbox is unavailable), `trusted` (an administrator's opt-in: the old isolated child
process, NOT a boundary) or `off` (always refused). `refusal(settings)` gives the reason a code node
is refused (None: allowed; a call may run the probe, so async callers use `refusal_async`).
`definition_problems(definition, permissions, settings)` lists, per code node of a definition, why it
cannot be saved: the mode (422) or the missing `nodes:code` permission (403), with path and node id;
the API's save routes call it. `author_may_run_code(pool, run_id)` re-checks at run time that whoever
saved the run's flow version still holds the permission (and the run's owner too when the run's
tweaks override the node); `code_tweak_problems` refuses such tweaks at the API without it.
`availability(type)` feeds the catalogue.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio

from flowstudio.auth.roles import CODE_PERMISSION, permissions_of
from flowstudio.sandbox.bwrap import sandbox_status
from flowstudio.store import users

Mode = Literal["sandbox", "trusted", "off"]
MODES: tuple[str, ...] = ("sandbox", "trusted", "off")
CODE_TYPE = "code"


def mode_of(settings: Any) -> str:
    mode = str(getattr(settings, "code_node", "sandbox") or "sandbox").strip().lower()
    return mode if mode in MODES else "off"  # an unknown value fails closed


def refusal(settings: Any) -> str | None:
    match mode_of(settings):
        case "trusted":
            return None
        case "sandbox":
            reason = sandbox_status(str(getattr(settings, "code_sandbox_bwrap", "") or ""))
            if reason is None:
                return None
            return (
                f"the code node needs an OS sandbox, unavailable here: {reason} "
                "(an administrator may set CODE_NODE=trusted, which is unsafe)"
            )
        case _:
            return "the code node is disabled on this installation (CODE_NODE=off)"


async def refusal_async(settings: Any) -> str | None:
    return await anyio.to_thread.run_sync(refusal, settings)


def code_node_paths(definition: Any) -> list[tuple[str, str]]:
    """(path, node id) of every code node in a raw definition."""
    nodes = definition.get("nodes") if isinstance(definition, dict) else None
    found = []
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        if isinstance(node, dict) and node.get("type") == CODE_TYPE:
            found.append((f"definition.nodes[{i}]", str(node.get("id", ""))))
    return found


async def definition_problems(
    definition: Any, permissions: list[str], settings: Any
) -> tuple[int, list[dict[str, Any]]]:
    """(status, errors): 0 and [] when every code node may be saved."""
    found = code_node_paths(definition)
    if not found:
        return 0, []
    reason = await refusal_async(settings)
    if reason is not None:
        return 422, [{"path": f"{p}.type", "node_id": n, "reason": reason} for p, n in found]
    if CODE_PERMISSION not in permissions:
        reason = f"the code node needs the {CODE_PERMISSION} permission (an admin grants it)"
        return 403, [{"path": f"{p}.type", "node_id": n, "reason": reason} for p, n in found]
    return 0, []


async def author_may_run_code(pool: Any, run_id: str, node_id: str) -> bool:
    """The version's author holds `nodes:code` now; if the run's tweaks override this node's
    params (its code), so does the run's owner, who sent them."""
    if pool is None:
        return False
    async with pool.connection() as conn:
        row = await users.version_author_permissions(conn, run_id, node_id)
    if row is None:
        return False
    if CODE_PERMISSION not in permissions_of(row["roles"], row["granted_permissions"]):
        return False
    owner = permissions_of(row["owner_roles"], row["owner_granted"])
    return not row["tweaked"] or CODE_PERMISSION in owner


def code_tweak_problems(
    code_node_ids: list[str], tweaks: Any, permissions: list[str]
) -> list[dict]:
    """Tweaks (per-run param overrides) of a code node change its code: they need `nodes:code`."""
    if CODE_PERMISSION in permissions or not isinstance(tweaks, dict):
        return []
    reason = f"tweaking a code node needs the {CODE_PERMISSION} permission"
    return [
        {"path": f"body.tweaks.{n}", "node_id": n, "reason": reason}
        for n in code_node_ids
        if n in tweaks
    ]


async def availability(node_type: str, settings: Any) -> tuple[bool, str | None]:
    if node_type != CODE_TYPE:
        return True, None
    reason = await refusal_async(settings)
    return reason is None, reason
