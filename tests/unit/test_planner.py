"""Graph readiness: parallel branches, joins, conditional skips and their propagation, run state."""

from __future__ import annotations

from typing import Any

from flowstudio.engine.planner import StepState, plan, ready_on_success, run_state
from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import decode_definition


def graph(edges: list[tuple[str, str] | tuple[str, str, str]], nodes: list[str]) -> FlowGraph:
    defn: dict[str, Any] = {
        "nodes": [{"id": n, "type": "noop"} for n in nodes],
        "edges": [
            {"source": e[0], "target": e[1], "sourceHandle": e[2] if len(e) > 2 else None}
            for e in edges
        ],
    }
    return FlowGraph.build(decode_definition(defn))


def states(**kw: str | tuple[str, str]) -> dict[str, StepState]:
    return {k: StepState(*v) if isinstance(v, tuple) else StepState(v) for k, v in kw.items()}


def test_roots_are_ready_first() -> None:
    g = graph([("a", "b"), ("c", "b")], ["a", "b", "c"])
    p = plan(g, states(a="pending", b="pending", c="pending"))
    assert sorted(p.ready) == ["a", "c"] and not p.skipped


def test_join_waits_for_every_branch() -> None:
    g = graph([("a", "j"), ("b", "j")], ["a", "b", "j"])
    assert plan(g, states(a="succeeded", b="running", j="pending")).ready == []
    assert plan(g, states(a="succeeded", b="succeeded", j="pending")).ready == ["j"]


def test_untaken_branch_is_skipped_and_skip_propagates_to_a_dead_end() -> None:
    g = graph(
        [("c", "t", "true"), ("c", "f", "false"), ("f", "f2"), ("t", "m"), ("f2", "m")],
        ["c", "t", "f", "f2", "m"],
    )
    s = states(c=("succeeded", "true"), t="pending", f="pending", f2="pending", m="pending")
    p = plan(g, s)
    assert p.ready == ["t"] and sorted(p.skipped) == ["f", "f2"]
    s["t"].status = "succeeded"
    assert plan(g, s).ready == ["m"], "a merge after a condition runs with the one active branch"


def test_node_with_only_skipped_inputs_is_skipped() -> None:
    g = graph([("c", "x", "false"), ("x", "y")], ["c", "x", "y"])
    p = plan(g, states(c=("succeeded", "true"), x="pending", y="pending"))
    assert sorted(p.skipped) == ["x", "y"] and p.ready == []


def test_failed_upstream_schedules_nothing() -> None:
    g = graph([("a", "b")], ["a", "b"])
    assert plan(g, states(a="failed", b="pending")).ready == []


def test_run_state() -> None:
    assert run_state(states(a="succeeded", b="skipped")) == "succeeded"
    assert run_state(states(a="succeeded", b="waiting", c="pending")) == "waiting"
    assert run_state(states(a="running", b="waiting")) == "running"
    assert run_state(states(a="failed", b="cancelled")) == "failed"


def test_cycle_is_found() -> None:
    g = graph([("a", "b"), ("b", "c"), ("c", "a")], ["a", "b", "c"])
    cycle = g.find_cycle()
    assert cycle is not None and set(cycle) == {"a", "b", "c"}
    assert graph([("a", "b")], ["a", "b"]).find_cycle() is None


def test_ready_on_success_names_exactly_what_plan_will_ready() -> None:
    """The hot path readies these in the success's own message: they must be a subset of what
    `plan()` decides after the success, whatever the rest of the run is doing."""
    g = graph(
        [("a", "b"), ("a", "j"), ("x", "j"), ("c", "t", "true"), ("c", "f", "false"), ("c", "u")],
        ["a", "b", "j", "x", "c", "t", "f", "u"],
    )
    assert ready_on_success(g, "a", None) == ("b",)  # j also waits for x
    assert ready_on_success(g, "c", "true") == ("t",)  # u's edge leaves no chosen port
    assert ready_on_success(g, "c", "false") == ("f",)
    assert ready_on_success(g, "b", None) == ()
    for x_state in ("pending", "running", "succeeded"):
        s = states(a="succeeded", b="pending", j="pending", x=x_state)
        s.update(states(c=("succeeded", "true"), t="pending", f="pending", u="pending"))
        ready = plan(g, s).ready
        assert {"b", "t"} <= set(ready) and not {"f", "u"} & set(ready)
