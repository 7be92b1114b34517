"""Flow definitions are refused on save with the node id, the JSON path and the reason."""

from __future__ import annotations

from typing import Any

from flowstudio.flows.validate import validate_definition
from flowstudio.nodes.templating import TemplateError, evaluate, render_params
from tests.support.flows import node


def errors_of(defn: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    _, errors = validate_definition(defn)
    return [(e.path, e.node_id, e.reason) for e in errors]


def test_valid_contract_example_passes() -> None:
    defn = {
        "nodes": [
            {"id": "in", "type": "input", "position": {"x": 0, "y": 0}, "data": {"params": {}}},
            {
                "id": "call",
                "type": "http_request",
                "position": {"x": 250, "y": 0},
                "data": {
                    "params": {
                        "method": "POST",
                        "url": "http://127.0.0.1:9000/x",
                        "body": "{{ in.text }}",
                    }
                },
            },
            {"id": "out", "type": "output", "position": {"x": 500, "y": 0}, "data": {"params": {}}},
        ],
        "edges": [
            {
                "id": "e1",
                "source": "in",
                "sourceHandle": "out",
                "target": "call",
                "targetHandle": "in",
            },
            {
                "id": "e2",
                "source": "call",
                "sourceHandle": "out",
                "target": "out",
                "targetHandle": "in",
            },
        ],
    }
    assert errors_of(defn) == []


def test_unknown_type() -> None:
    assert errors_of({"nodes": [node("a", "nope")]}) == [
        ("definition.nodes[0].type", "a", "unknown node type 'nope'")
    ]


def test_missing_param_names_node_and_field() -> None:
    (err,) = errors_of({"nodes": [node("t", "template")]})
    assert (
        err[1] == "t"
        and "template" in err[2]
        and err[0].startswith("definition.nodes[0].data.params")
    )


def test_wrong_param_type_has_field_path() -> None:
    (err,) = errors_of({"nodes": [node("d", "delay", seconds="soon")]})
    assert err[0] == "definition.nodes[0].data.params.seconds" and err[1] == "d"


def test_templated_param_of_another_type_is_accepted() -> None:
    assert (
        errors_of(
            {
                "nodes": [node("in", "input"), node("d", "delay", seconds="{{ inputs.s }}")],
                "edges": [{"source": "in", "target": "d"}],
            }
        )
        == []
    )


def test_dangling_edge_and_bad_port() -> None:
    errs = errors_of(
        {
            "nodes": [node("a", "noop"), node("c", "condition", expression="1 > 0")],
            "edges": [
                {"id": "e1", "source": "a", "target": "zz"},
                {"id": "e2", "source": "c", "target": "a", "sourceHandle": "maybe"},
            ],
        }
    )
    reasons = [e[2] for e in errs]
    assert "dangling edge: no node 'zz'" in reasons
    assert any("no output port 'maybe'" in r for r in reasons)


def test_cycle_is_refused() -> None:
    errs = errors_of(
        {
            "nodes": [node("a", "noop"), node("b", "noop")],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
        }
    )
    assert len(errs) == 1 and errs[0][2].startswith("cycle: ")


def test_template_reference_to_unknown_node() -> None:
    errs = errors_of({"nodes": [node("t", "template", template="{{ ghost.text }}")]})
    assert errs == [
        ("definition.nodes[0].data.params", "t", "template references unknown node 'ghost'")
    ]


def test_template_syntax_error() -> None:
    (err,) = errors_of({"nodes": [node("t", "template", template="{{ oops ")]})
    assert "syntax" in err[2]


def test_sandbox_refuses_internals() -> None:
    try:
        render_params("{{ inputs.__class__.__mro__ }}", {"inputs": {}})
    except TemplateError:
        pass
    else:
        raise AssertionError("sandbox let an internal attribute through")
    assert evaluate("inputs.n > 3 and 'a' in inputs.s", {"inputs": {"n": 5, "s": "abc"}}) is True


def test_limits_refuse_before_decoding_with_the_path() -> None:
    from flowstudio.flows.validate import FlowLimits

    edges = [{"source": "a", "target": "b"}] * 11
    defn = {"nodes": [node("a", "input"), node("b", "output")], "edges": edges}
    _, errors = validate_definition(defn, FlowLimits(max_nodes=5, max_edges=10))
    assert [(e.path, e.reason) for e in errors] == [
        ("definition.edges", "at most 10 edges per flow (got 11)")
    ]
    defn = {"nodes": [node(f"n{i}", "noop") for i in range(6)], "edges": []}
    _, errors = validate_definition(defn, FlowLimits(max_nodes=5, max_edges=10))
    assert [e.path for e in errors] == ["definition.nodes"]


def test_validation_work_is_linear_in_edges(monkeypatch: Any) -> None:
    """20,000 identical edges between two nodes took 12.7 s: the successor list was rebuilt at every
    step of the cycle search and output ports were computed per edge. Count the work instead of
    timing it: ports once per node, and each edge read once by the cycle search."""
    from flowstudio.flows.graph import FlowGraph
    from flowstudio.flows.model import decode_definition
    from flowstudio.flows.validate import FlowLimits
    from flowstudio.nodes import registry

    calls = {"outputs_for": 0, "iter": 0, "getitem": 0}
    spec = registry.get("input")
    assert spec is not None
    original = type(spec).outputs_for

    def counting_outputs_for(self: Any, params: dict[str, Any]) -> Any:
        calls["outputs_for"] += 1
        return original(self, params)

    monkeypatch.setattr(type(spec), "outputs_for", counting_outputs_for)
    edges = [{"source": "a", "target": "b", "sourceHandle": "out"} for _ in range(20_000)]
    defn = {"nodes": [node("a", "input"), node("b", "output")], "edges": edges}
    _, errors = validate_definition(defn, FlowLimits(max_edges=20_000))
    assert errors == []
    assert calls["outputs_for"] == 1

    class CountingList(list):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            calls["iter"] += 1
            return super().__iter__()

        def __getitem__(self, index: Any) -> Any:
            calls["getitem"] += 1
            return super().__getitem__(index)

    graph = FlowGraph.build(decode_definition(defn))
    graph.outgoing_edges["a"] = CountingList(graph.outgoing_edges["a"])
    assert graph.find_cycle() is None
    assert calls["iter"] <= 1 and calls["getitem"] <= 20_000
