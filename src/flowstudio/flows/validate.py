"""Validation of a flow definition on save: every problem with its JSON path, node id and reason.

`validate_definition(raw, limits)` first refuses a definition over `limits` (node and edge counts,
before anything is decoded: `FlowLimits`, from FLOW_MAX_NODES / FLOW_MAX_EDGES), then decodes the JSON
(type errors keep msgspec's path) and checks, in order: duplicate/unknown node types, params against
each node's Struct (`_check_params`, templated values stand in for their field's type), edges
(dangling, ports that do not exist), cycles, template references to nodes that do not exist, and secrets used outside a credential field
(`_secret_field_errors`; the sandbox refuses them at run time too).
Returns `(definition, errors)`; the API answers 422 with them. Every pass is linear in nodes + edges
(the node-id set and each node's output ports are computed once; the cycle search walks each
adjacency list once): 20,000 edges between two nodes once took 12.7 s here.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

import msgspec

from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import FlowDefinition, decode_definition
from flowstudio.nodes import registry
from flowstudio.nodes.templating import (
    CREDENTIAL_FIELDS,
    RESERVED,
    TemplateError,
    is_template,
    referenced_names,
    referenced_secrets,
)


class FlowLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_nodes: int = 2000
    max_edges: int = 10000


class FlowError(msgspec.Struct, kw_only=True):
    path: str
    reason: str
    node_id: str | None = None
    edge_id: str | None = None


def _bounded(base: Any, metas: tuple[Any, ...]) -> Any:
    """A number of type `base` inside the msgspec.Meta bounds (ge/gt/le/lt) of an Annotated field."""
    value: float = 0
    for meta in metas:
        if not isinstance(meta, msgspec.Meta):
            continue
        if meta.ge is not None:
            value = max(value, meta.ge)
        if meta.gt is not None:
            value = max(value, meta.gt + (1 if base is int else (abs(meta.gt) or 1) * 1e-6))
        if meta.le is not None:
            value = min(value, meta.le)
        if meta.lt is not None:
            value = min(value, meta.lt - 1 if base is int else meta.lt * (1 - 1e-6))
    return int(value) if base is int else float(value)


def _placeholder(annotation: Any) -> Any:
    """A value of the field's type, standing in for a template string at save time (inside the
    field's bounds, so `seconds: "{{ inputs.wait }}"` passes and the bound is checked at run time).
    """
    if get_origin(annotation) is Annotated:
        base, *metas = get_args(annotation)
        if base in (int, float):
            return _bounded(base, tuple(metas))
        return _placeholder(base)
    options = get_args(annotation) if get_origin(annotation) is not None else (annotation,)
    for t in options:
        if t is str or t is Any:
            return "x"
    for t in options:
        if get_origin(t) is Annotated:
            return _placeholder(t)
        if t is bool:
            return False
        if t is int:
            return 0
        if t is float:
            return 0.0
        if get_origin(t) is dict or t is dict:
            return {}
        if get_origin(t) is list or t is list:
            return []
    return "x"


def _check_params(
    spec: registry.NodeSpec, params: dict[str, Any], path: str, node_id: str
) -> list[FlowError]:
    fields = {f.name: f.type for f in msgspec.structs.fields(spec.params)}
    probe = {}
    for key, value in params.items():
        if key in fields and isinstance(value, str) and is_template(value):
            probe[key] = _placeholder(fields[key])
        else:
            probe[key] = value
    try:
        spec.decode_params(probe)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        where = ""
        if " - at `$" in msg:
            msg, where = msg.split(" - at `$", 1)
            where = where.rstrip("`")
        return [FlowError(path=f"{path}{where}", reason=msg, node_id=node_id)]
    return []


def _count_problems(raw: bytes | dict[str, Any], limits: FlowLimits) -> list[FlowError]:
    if not isinstance(raw, dict):
        return []
    errors = []
    for key, limit in (("nodes", limits.max_nodes), ("edges", limits.max_edges)):
        items = raw.get(key)
        if isinstance(items, list) and len(items) > limit:
            reason = f"at most {limit} {key} per flow (got {len(items)})"
            errors.append(FlowError(path=f"definition.{key}", reason=reason))
    return errors


def validate_definition(
    raw: bytes | dict[str, Any], limits: FlowLimits | None = None
) -> tuple[FlowDefinition | None, list[FlowError]]:
    too_big = _count_problems(raw, limits or FlowLimits())
    if too_big:
        return None, too_big
    try:
        defn = decode_definition(raw)
    except msgspec.ValidationError as exc:
        msg, _, where = str(exc).partition(" - at `$")
        return None, [FlowError(path="definition" + where.rstrip("`"), reason=msg)]
    except msgspec.DecodeError as exc:
        return None, [FlowError(path="definition", reason=f"invalid JSON: {exc}")]
    errors: list[FlowError] = []
    node_ids = {n.id for n in defn.nodes}
    if not defn.nodes:
        errors.append(FlowError(path="definition.nodes", reason="a flow needs at least one node"))
    seen: set[str] = set()
    for i, node in enumerate(defn.nodes):
        path = f"definition.nodes[{i}]"
        if not node.id:
            errors.append(FlowError(path=f"{path}.id", reason="node id must not be empty"))
        if node.id in seen:
            errors.append(
                FlowError(
                    path=f"{path}.id", reason=f"duplicate node id {node.id!r}", node_id=node.id
                )
            )
        if node.id in RESERVED:
            errors.append(
                FlowError(
                    path=f"{path}.id", node_id=node.id, reason=f"node id {node.id!r} is reserved"
                )
            )
        seen.add(node.id)
        spec = registry.get(node.type)
        if spec is None:
            errors.append(
                FlowError(
                    path=f"{path}.type", node_id=node.id, reason=f"unknown node type {node.type!r}"
                )
            )
            continue
        errors += _check_params(spec, node.data.params, f"{path}.data.params", node.id)
        try:
            names = referenced_names(
                {k: v for k, v in node.data.params.items() if k not in spec.expressions},
                [str(node.data.params[k]) for k in spec.expressions if k in node.data.params],
            )
        except TemplateError as exc:
            errors.append(FlowError(path=f"{path}.data.params", node_id=node.id, reason=str(exc)))
            continue
        errors += _secret_field_errors(node.id, path, node.data.params, spec)
        for name in sorted(names - RESERVED):
            if name not in node_ids:
                errors.append(
                    FlowError(
                        path=f"{path}.data.params",
                        node_id=node.id,
                        reason=f"template references unknown node {name!r}",
                    )
                )
    errors += _check_edges(defn)
    if not errors:
        cycle = FlowGraph.build(defn).find_cycle()
        if cycle:
            errors.append(
                FlowError(
                    path="definition.edges",
                    node_id=cycle[0],
                    reason="cycle: " + " -> ".join([*cycle, cycle[0]]),
                )
            )
    return defn, errors


def _param_sets(params: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """The node's params and the params it renders later: a map body's, each agent tool's."""
    sets = [(path, params)]
    body = params.get("body")
    if isinstance(body, dict) and isinstance(body.get("params"), dict):
        sets.append((f"{path}.body.params", body["params"]))
    for i, tool in enumerate(params.get("tools") or []):
        if isinstance(tool, dict) and isinstance(tool.get("params"), dict):
            sets.append((f"{path}.tools[{i}].params", tool["params"]))
    return sets


def _secret_field_errors(
    node_id: str, path: str, params: dict[str, Any], spec: registry.NodeSpec
) -> list[FlowError]:
    """A secret outside a credential field is refused at save (and at run: `nodes/sandbox.py`)."""
    errors = []
    for where, fields in _param_sets(params, f"{path}.data.params"):
        top = where == f"{path}.data.params"
        for key, value in fields.items():
            if key in CREDENTIAL_FIELDS or (top and key in spec.deferred):
                continue
            try:
                if top and key in spec.expressions:
                    used = referenced_secrets({}, [str(value)])
                else:
                    used = referenced_secrets(value)
            except TemplateError:
                continue  # reported as a syntax error above
            if used:
                errors.append(
                    FlowError(
                        path=f"{where}.{key}",
                        node_id=node_id,
                        reason=f"secrets ({', '.join(sorted(used))}) may only be used whole in a"
                        f" credential field ({', '.join(sorted(CREDENTIAL_FIELDS))})",
                    )
                )
    return errors


def _port_problem(
    kind: str, node_type: str, handle: str | None, ports: list[str]
) -> tuple[str, str] | None:
    """(field, reason) when an edge's `kind` ("output"/"input") end does not fit the node's ports."""
    end = "source" if kind == "output" else "target"
    if not ports:
        return end, f"node type {node_type!r} has no {kind} port"
    if handle is None and kind == "output" and len(ports) > 1:
        return f"{end}Handle", f"choose an output port: {', '.join(ports)}"
    if handle is not None and handle not in ports:
        return f"{end}Handle", f"no {kind} port {handle!r} (ports: {', '.join(ports)})"
    return None


def _check_edges(defn: FlowDefinition) -> list[FlowError]:
    errors: list[FlowError] = []
    nodes = {n.id: n for n in defn.nodes}
    output_ports: dict[str, list[str]] = {}  # per node, once: params may make them costly
    for i, edge in enumerate(defn.edges):
        path = f"definition.edges[{i}]"
        for end, node_id in (("source", edge.source), ("target", edge.target)):
            if node_id not in nodes:
                reason = f"dangling edge: no node {node_id!r}"
                errors.append(FlowError(path=f"{path}.{end}", edge_id=edge.id, reason=reason))
        if edge.source not in nodes or edge.target not in nodes:
            continue
        src = registry.get(nodes[edge.source].type)
        dst = registry.get(nodes[edge.target].type)
        ends: list[tuple[str, str, str, str | None, list[str]]] = []
        if src is not None:
            outs = output_ports.get(edge.source)
            if outs is None:
                outs = [p.name for p in src.outputs_for(nodes[edge.source].data.params)]
                output_ports[edge.source] = outs
            ends.append(("output", edge.source, src.type, edge.sourceHandle, outs))
        if dst is not None:
            ins = [p.name for p in dst.inputs]
            ends.append(("input", edge.target, dst.type, edge.targetHandle, ins))
        for kind, node_id, node_type, handle, ports in ends:
            problem = _port_problem(kind, node_type, handle, ports)
            if problem is not None:
                field, reason = problem
                errors.append(
                    FlowError(
                        path=f"{path}.{field}", edge_id=edge.id, node_id=node_id, reason=reason
                    )
                )
    return errors


def validate_tweaks(defn: FlowDefinition, tweaks: dict[str, Any]) -> list[FlowError]:
    """Per-run param overrides: the node must exist and its merged params must still be valid."""
    errors: list[FlowError] = []
    nodes = {n.id: n for n in defn.nodes}
    for node_id, override in tweaks.items():
        path = f"body.tweaks.{node_id}"
        node = nodes.get(node_id)
        if node is None:
            errors.append(FlowError(path=path, reason=f"no node {node_id!r} in this flow"))
            continue
        if not isinstance(override, dict):
            errors.append(FlowError(path=path, node_id=node_id, reason="must be an object"))
            continue
        spec = registry.get(node.type)
        if spec is not None:
            errors += _check_params(spec, {**node.data.params, **override}, path, node_id)
    return errors
