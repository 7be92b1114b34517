"""The one builder of flow definitions for tests: `node`, `edge`, `flow_def`, `chain` and shapes.

Every test tier builds its definitions here (the designer's JSON shape, DESIGN.md "Flow definition"):
- `node("t", "template", template="hi")` -> `{"id", "type", "data": {"params": {...}}}`; `data=`
  adds node-level fields next to the params (`retry`, `timeout_s`, `label`); a param itself named
  `data` (json_transform) goes in afterwards: `n = node(...); n["data"]["params"]["data"] = ...`.
- `edge("c", "hi", "true")` -> `{"source", "target", "sourceHandle"}` (None: the default port).
- `flow_def(nodes, edges)` -> `{"nodes": [...], "edges": [...]}`.
- `chain(("t", "template", {...}), ...)` -> input -> those nodes -> output, laid out like the
  designer saves it (positions, edge ids, `out` -> `in` handles); `retry={node_id: {...}}` merges
  node-level data. `linear_flow` is the same function under the name older tests import.
- `template_flow(text)` -> input -> template `t` rendering `text` -> output.
- `map_flow(body, concurrency, on_error)` -> input -> map `m` over `inputs.xs` -> output.
- `branch_flow()` -> a condition `c` on `inputs.score > 5`: `hi` when true, `lo` -> `lo2` when false,
  joined again at `m` -> output.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

NodeSpec = tuple[str, str, dict[str, Any]]


def node(nid: str, ntype: str, data: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    return {"id": nid, "type": ntype, "data": {"params": params, **(data or {})}}


def edge(src: str, dst: str, handle: str | None = None) -> dict[str, Any]:
    return {"source": src, "target": dst, "sourceHandle": handle}


def flow_def(nodes: Iterable[dict[str, Any]], edges: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"nodes": list(nodes), "edges": list(edges)}


def chain(*nodes: NodeSpec, retry: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A chain input -> nodes... -> output. Each node is (id, type, params)."""
    all_nodes = [("in", "input", {}), *nodes, ("out", "output", {})]
    defn_nodes = []
    for nid, ntype, params in all_nodes:
        data: dict[str, Any] = {"params": params}
        if retry and nid in retry:
            data.update(retry[nid])
        defn_nodes.append({"id": nid, "type": ntype, "position": {"x": 0, "y": 0}, "data": data})
    edges = [
        {"id": f"e{i}", "source": a[0], "target": b[0], "sourceHandle": "out", "targetHandle": "in"}
        for i, (a, b) in enumerate(itertools.pairwise(all_nodes))
    ]
    return {"nodes": defn_nodes, "edges": edges}


linear_flow = chain


def template_flow(text: str) -> dict[str, Any]:
    return chain(("t", "template", {"template": text}))


def map_flow(
    body: dict[str, Any], concurrency: int = 3, on_error: str = "fail_fast"
) -> dict[str, Any]:
    """input -> `m` (a map over `inputs.xs` running `body` per item) -> output."""
    return chain(
        (
            "m",
            "map",
            {"items": "inputs.xs", "body": body, "concurrency": concurrency, "on_error": on_error},
        )
    )


def branch_flow() -> dict[str, Any]:
    return flow_def(
        [
            node("in", "input"),
            node("c", "condition", expression="inputs.score > 5"),
            node("hi", "template", template="high"),
            node("lo", "template", template="low"),
            node("lo2", "noop"),
            node("m", "noop"),
            node("out", "output"),
        ],
        [
            edge("in", "c"),
            edge("c", "hi", "true"),
            edge("c", "lo", "false"),
            edge("lo", "lo2"),
            edge("hi", "m"),
            edge("lo2", "m"),
            edge("m", "out"),
        ],
    )
