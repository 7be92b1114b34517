"""Pinned flow versions, parsed once per process: `load_graph(conn, flow_id, version)`;
`cached_graph(flow_id, version)` without a connection when it is cached.

Versions are immutable, so a process-wide LRU of `FlowGraph`s keyed by (flow_id, version) is always
correct; workers and the orchestrator call it on every step without re-reading the definition.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import psycopg

from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import decode_definition

_CACHE: OrderedDict[tuple[str, int], FlowGraph] = OrderedDict()
_MAX = 512


def cached_graph(flow_id: Any, version: int) -> FlowGraph | None:
    """The graph if this process parsed it already (no connection needed), else None."""
    key = (str(flow_id), int(version))
    graph = _CACHE.get(key)
    if graph is not None:
        _CACHE.move_to_end(key)
    return graph


async def load_graph(conn: psycopg.AsyncConnection[Any], flow_id: Any, version: int) -> FlowGraph:
    graph = cached_graph(flow_id, version)
    if graph is not None:
        return graph
    key = (str(flow_id), int(version))
    cur = await conn.execute(
        "SELECT definition FROM flow_versions WHERE flow_id = %s AND version = %s", key
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"flow version {key} not found")
    graph = FlowGraph.build(decode_definition(row["definition"]))
    _CACHE[key] = graph
    if len(_CACHE) > _MAX:
        _CACHE.popitem(last=False)
    return graph
