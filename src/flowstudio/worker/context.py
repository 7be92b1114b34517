"""What a claimed step sees: its port input, its template context, and its rendered params.

`build_context(conn, step, graph, spec, secret_key)` loads in one query the outputs of the node's
predecessors and of every node its templates reference (names cached per pinned version; the same
names `context_nodes` gives eager dispatch, which passes the rows it read instead), computes
the port input from the active incoming edges (one edge: that output; several: a dict by source id;
none: the run inputs), and returns the template context, with the run owner's decrypted secrets that
the node's templates reference (`secret_values.load_step_secrets`; no query when none is used).
`render_node_params(spec, raw, context, timeout_s)` fails the step non-retryably if a referenced
secret is missing, renders templates (not the params the node evaluates itself as expressions) under
one budget and deadline (`templating.rendering`: a template error, a misused secret or a limit is a
non-retryable failure naming the reason, never a value) and decodes them into the node's params
Struct. `render_off_loop(raw)` says when that must run in a thread (`worker/execute.py`): any
statement (`{%`), `range`, or a large template.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
import psycopg

from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.engine.planner import StepState, edge_active
from flowstudio.engine.txnsql import STEP_CONTEXT
from flowstudio.flows.graph import FlowGraph
from flowstudio.nodes import registry
from flowstudio.nodes.registry import NodeError, NodeSpec
from flowstudio.nodes.templating import (
    RESERVED,
    TemplateError,
    referenced_names,
    render_fields,
    rendering,
)
from flowstudio.worker.secret_values import load_step_secrets, secret_problem, step_secret_names

INLINE_TEMPLATE_CHARS = 2000  # larger templates render in a thread


@lru_cache(maxsize=4096)
def _needed_nodes(graph: FlowGraph, node_id: str, spec: NodeSpec) -> tuple[str, ...]:
    params = graph.nodes[node_id].data.params
    names = referenced_names(
        {k: v for k, v in params.items() if k not in spec.expressions},
        [str(params[k]) for k in spec.expressions if k in params],
    )
    refs = {n for n in names - RESERVED if n in graph.nodes}
    return tuple(sorted(refs | set(graph.predecessors(node_id))))


def context_nodes(graph: FlowGraph, node_id: str) -> tuple[str, ...]:
    """The nodes whose state and output `build_context` reads for `node_id` (eager dispatch reads
    them in the commit that claims the step: `engine.checkpoint.EagerClaim`)."""
    spec = registry.get(graph.nodes[node_id].type)
    return _needed_nodes(graph, node_id, spec) if spec is not None else ()


def reads_database(
    step: ClaimedStep, graph: FlowGraph, spec: NodeSpec, rows: list[dict[str, Any]] | None
) -> bool:
    """Whether `build_context` needs a connection: context rows not read yet, or secrets."""
    needed = _needed_nodes(graph, step.node_id, spec)
    return bool(needed and rows is None) or bool(step_secret_names(step, graph, spec))


async def build_context(
    conn: psycopg.AsyncConnection[Any] | None,
    step: ClaimedStep,
    graph: FlowGraph,
    spec: NodeSpec,
    secret_key: str | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """`rows`: the context rows when already read (eager dispatch); otherwise one query here.
    `conn` may be None when `reads_database` says no connection is needed."""
    needed = _needed_nodes(graph, step.node_id, spec)
    outputs: dict[str, Any] = {}
    states: dict[str, StepState] = {}
    if needed and rows is None:
        assert conn is not None, "reads_database said no connection was needed"
        cur = await conn.execute(STEP_CONTEXT, {"ctx_run": step.run_id, "ctx_nodes": list(needed)})
        rows = await cur.fetchall()
    for r in rows or ():
        states[r["node_id"]] = StepState(r["status"], r["branch"])
        if r["status"] == "succeeded":
            outputs[r["node_id"]] = r["output"]
    active = [
        e.source
        for e in graph.incoming(step.node_id)
        if e.source in states and edge_active(e, states[e.source])
    ]
    active = list(dict.fromkeys(active))
    match active:
        case []:
            port_input: Any = step.inputs
        case [single]:
            port_input = outputs.get(single)
        case _:
            port_input = {src: outputs.get(src) for src in active}
    context = {
        **outputs,
        "inputs": step.inputs,
        "input": port_input,
        "run": {"id": step.run_id, "flow_id": step.flow_id, "attempt": step.attempt},
        **await load_step_secrets(conn, step, step_secret_names(step, graph, spec), secret_key),
    }
    return port_input, context


def _template_sources(value: Any) -> list[str]:
    match value:
        case str():
            return [value] if "{" in value else []
        case dict():
            return [s for v in value.values() for s in _template_sources(v)]
        case list():
            return [s for v in value for s in _template_sources(v)]
        case _:
            return []


def render_off_loop(raw: dict[str, Any]) -> bool:
    """Whether rendering `raw` may take long enough to keep off the event loop."""
    sources = _template_sources(raw)
    return sum(len(s) for s in sources) > INLINE_TEMPLATE_CHARS or any(
        "{%" in s or "range" in s for s in sources
    )


def render_node_params(
    spec: NodeSpec,
    raw: dict[str, Any],
    context: dict[str, Any],
    timeout_s: float | None = None,
    node_id: str | None = None,
) -> Any:
    problem = secret_problem(context)
    if problem:
        raise NodeError(problem, retryable=False)
    try:
        with rendering(timeout_s):
            rendered = render_fields(raw, context, frozenset((*spec.expressions, *spec.deferred)))
    except TemplateError as exc:
        where = f"node {node_id!r}: " if node_id else ""
        raise NodeError(f"{where}{exc}", retryable=False) from exc
    try:
        return msgspec.convert(rendered, spec.params, strict=False)
    except msgspec.ValidationError as exc:
        raise NodeError(f"invalid params: {exc}", retryable=False) from exc
