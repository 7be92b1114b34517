"""Every numeric param of every node type has bounds, refused at save with its field path (issue 9.5).

The walk finds each int/float field of each node's params Struct (nested Structs too, e.g. a map's
`body.timeout_s`), checks it carries a msgspec.Meta lower AND upper bound, then saves a definition with
a value past each bound and expects the validator's error at `definition.nodes[0].data.params.<path>`.
A template in a bounded field still saves (its value is checked when it renders). `code` is left to
the sandbox work (issue 9.1), which owns its params.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec
import pytest

from flowstudio.flows.validate import _placeholder, validate_definition
from flowstudio.nodes import registry

SKIP = {"code"}
Numeric = tuple[str, type, msgspec.Meta]


def _unwrap(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def numeric_fields(struct: type[msgspec.Struct], prefix: str = "") -> list[Numeric]:
    found: list[Numeric] = []
    for field in msgspec.structs.fields(struct):
        for option in _unwrap(field.type):
            if get_origin(option) is Annotated:
                base, *metas = get_args(option)
                if base in (int, float):
                    meta = next(m for m in metas if isinstance(m, msgspec.Meta))
                    found.append((prefix + field.name, base, meta))
            elif option in (int, float):
                found.append((prefix + field.name, option, msgspec.Meta()))
            elif isinstance(option, type) and issubclass(option, msgspec.Struct):
                found += numeric_fields(option, f"{prefix}{field.name}.")
    return found


def required_params(spec: registry.NodeSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in msgspec.structs.fields(spec.params):
        if field.name in spec.expressions:
            out[field.name] = "inputs.rows"
        elif field.required:
            is_struct = isinstance(field.type, type) and issubclass(field.type, msgspec.Struct)
            out[field.name] = {} if is_struct else _placeholder(field.type)
    return out


CASES = [
    (spec.type, path, base, meta)
    for spec in registry.load_all().values()
    if spec.type not in SKIP
    for path, base, meta in numeric_fields(spec.params)
]


def _set(params: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    if not rest:
        return {**params, head: value}
    return {**params, head: _set(dict(params.get(head) or {}), rest, value)}


def _errors(node_type: str, params: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    defn = {"nodes": [{"id": "n", "type": node_type, "data": {"params": params}}]}
    return [(e.path, e.node_id, e.reason) for e in validate_definition(defn)[1]]


def test_the_walk_found_the_params_of_every_family() -> None:
    kinds = {t for t, *_ in CASES}
    assert {"delay", "http_request", "llm_chat", "agent", "map", "text_splitter"} <= kinds
    assert len(CASES) >= 40


@pytest.mark.parametrize(("node_type", "path", "base", "meta"), CASES)
def test_numeric_param_is_bounded_and_refused_at_save_with_its_path(
    node_type: str, path: str, base: type, meta: msgspec.Meta
) -> None:
    spec = registry.get(node_type)
    assert spec is not None
    low = meta.ge if meta.ge is not None else meta.gt
    high = meta.le if meta.le is not None else meta.lt
    assert low is not None and high is not None, f"{node_type}.{path} has no bounds"
    base_params = required_params(spec)
    where = f"definition.nodes[0].data.params.{path}"
    too_big = base(high * 10 + 10) if base is int else 1e300
    too_small = base(low - 1) if meta.gt is None else base(low)
    for bad in (too_big, too_small):
        errors = _errors(node_type, _set(base_params, path, bad))
        assert len(errors) == 1 and errors[0][:2] == (where, "n"), (bad, errors)
        assert "Expected" in errors[0][2]
    # in range it saves, and so does a template in a top-level field (checked when it renders)
    assert _errors(node_type, _set(base_params, path, base(low if meta.gt is None else high))) == []
    if "." not in path:
        assert _errors(node_type, _set(base_params, path, "{{ inputs.x }}")) == []


def test_retry_policy_and_node_timeout_are_bounded_with_their_paths() -> None:
    node = {"id": "n", "type": "noop", "data": {"params": {}}}
    for data, where in (
        ({"timeout_s": 1e300}, "timeout_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"retry": {"max_attempts": 1000}}, "retry.max_attempts"),
        ({"retry": {"initial_interval": 1e300}}, "retry.initial_interval"),
        ({"retry": {"backoff": 1e9}}, "retry.backoff"),
        ({"retry": {"max_interval": -1}}, "retry.max_interval"),
    ):
        defn = {"nodes": [{**node, "data": {**node["data"], **data}}]}
        errors = validate_definition(defn)[1]
        assert [e.path for e in errors] == [f"definition.nodes[0].data.{where}"], data


def test_delay_of_1e300_seconds_is_refused_at_save() -> None:
    assert _errors("delay", {"seconds": 1e300}) == [
        ("definition.nodes[0].data.params.seconds", "n", "Expected `float` <= 2592000.0")
    ]
