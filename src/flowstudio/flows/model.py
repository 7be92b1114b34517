"""Wire shapes of a flow definition (the JSON the canvas saves, stored without translation).

`decode_definition(raw)` turns bytes or a dict into a `FlowDefinition`; msgspec reports the exact field
path of a type error and of an out-of-range retry policy or timeout (the bounds live in the types).
Unknown fields (React Flow adds `width`, `selected`, ...) are kept by the caller, who stores the
original JSON, and ignored here.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from flowstudio.nodes.bounds import RetryPolicy

__all__ = ["RetryPolicy"]  # re-exported: a node's retry policy is part of the flow definition


class Position(msgspec.Struct, kw_only=True):
    x: float = 0.0
    y: float = 0.0


class NodeData(msgspec.Struct, kw_only=True):
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    label: str | None = None
    retry: RetryPolicy | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 86_400)] | None = None


class Node(msgspec.Struct, kw_only=True):
    id: str
    type: str
    position: Position = msgspec.field(default_factory=Position)
    data: NodeData = msgspec.field(default_factory=NodeData)


class Edge(msgspec.Struct, kw_only=True):
    source: str
    target: str
    id: str | None = None
    sourceHandle: str | None = None
    targetHandle: str | None = None


class FlowDefinition(msgspec.Struct, kw_only=True):
    nodes: list[Node]
    edges: list[Edge] = msgspec.field(default_factory=list)


def decode_definition(raw: bytes | str | dict[str, Any]) -> FlowDefinition:
    if isinstance(raw, dict):
        return msgspec.convert(raw, FlowDefinition)
    return msgspec.json.decode(raw, type=FlowDefinition)
