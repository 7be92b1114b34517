"""Limits on untrusted JSON: nesting depth and NUL characters, reported with the path of the problem.

Deeply nested JSON overflows Python's recursion limit wherever it is decoded, encoded or walked (a
RecursionError, a 500 and a 3,000-line traceback per request), and U+0000 cannot be stored in
PostgreSQL text or jsonb. So every untrusted value is checked once where it enters:
- `body_problem(raw, max_depth)` for a raw JSON request body (the API's request guard): a fast
  pre-check answers most bodies without decoding (no `\\u0000` escape and fewer brackets than the
  limit); otherwise the body is decoded and walked. A body too deep even to decode is reported at
  `body`.
- `json_problem(value, path, max_depth)` for a decoded value (batch items, webhook bodies): an
  iterative walk (no recursion, linear in the value's size) that returns the first problem.
Both return a `JsonProblem(path, reason)` or None; the path reads like `body.inputs.a[3].b`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

NUL_REASON = "NUL characters (\\u0000) are not supported"


class JsonProblem(NamedTuple):
    path: str
    reason: str


def depth_reason(max_depth: int) -> str:
    return f"JSON nested deeper than {max_depth} levels"


def _render(link: tuple[Any, ...] | None) -> str:
    """A path from the linked (parent, key) tuples built while walking (only made on a problem)."""
    parts: list[str] = []
    while link is not None:
        link, key = link
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts))


def json_problem(value: Any, path: str = "body", max_depth: int = 64) -> JsonProblem | None:
    """The first container nested deeper than `max_depth` (the outermost counts as 1) or the first
    string or key holding U+0000 in `value`, else None."""
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = [(value, 0, None)]
    while stack:
        item, depth, link = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return JsonProblem(path + _render(link), NUL_REASON)
        elif isinstance(item, dict):
            if depth >= max_depth:
                return JsonProblem(path + _render(link), depth_reason(max_depth))
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return JsonProblem(path + _render(link), NUL_REASON + " in keys")
                if isinstance(child, dict | list | str):
                    stack.append((child, depth + 1, (link, key)))
        elif isinstance(item, list):
            if depth >= max_depth:
                return JsonProblem(path + _render(link), depth_reason(max_depth))
            for index, child in enumerate(item):
                if isinstance(child, dict | list | str):
                    stack.append((child, depth + 1, (link, index)))
    return None


def needs_walk(raw: bytes, max_depth: int) -> bool:
    """False when `raw` certainly holds no NUL and no nesting beyond `max_depth` (cheap, C speed)."""
    if b"\\u0000" in raw or b"\x00" in raw:
        return True
    return raw.count(b"[") + raw.count(b"{") > max_depth


def body_problem(raw: bytes, max_depth: int = 64) -> JsonProblem | None:
    """`json_problem` for a raw JSON body; malformed JSON is left to the handler (it answers 400)."""
    if not needs_walk(raw, max_depth):
        return None
    try:
        value = msgspec.json.decode(raw)
    except RecursionError:
        return JsonProblem("body", depth_reason(max_depth))
    except msgspec.DecodeError:
        return None
    return json_problem(value, "body", max_depth)
