"""What is ready: the pure decision of which pending steps become ready or skipped, and the run's state.

`plan(graph, states)` is called inside every checkpoint transaction with the run's current step states
(node id -> status and chosen branch). A pending node is decided once every upstream node is terminal:
it is `ready` if at least one incoming edge is active (its source succeeded and, for a branching node,
the edge leaves the chosen port), otherwise `skipped`; skips cascade in the same pass. `run_state()`
then says whether the run is done, still running, or only waiting on timers/signals.
`ready_on_success()` names the successors a success makes ready whatever else holds (the hot path);
`chain_successors()` names them when they are the success's only effect (`engine/onecall.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from flowstudio.engine.states import STEP_TERMINAL
from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import Edge


@dataclass
class StepState:
    status: str
    branch: str | None = None


@dataclass
class Plan:
    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def edge_active(edge: Edge, source: StepState) -> bool:
    if source.status != "succeeded":
        return False
    return source.branch is None or edge.sourceHandle == source.branch


def plan(graph: FlowGraph, states: dict[str, StepState]) -> Plan:
    """Decide pending nodes whose upstream is fully terminal; mutates `states` with the decisions."""
    result = Plan()
    changed = True
    while changed:
        changed = False
        for node_id, state in states.items():
            if state.status != "pending":
                continue
            edges = graph.incoming(node_id)
            sources = [states.get(e.source) for e in edges]
            if any(s is None or s.status not in STEP_TERMINAL for s in sources):
                continue
            if any(s.status in ("failed", "cancelled") for s in sources if s is not None):
                continue  # the run fails or is cancelled as a whole; nothing more to schedule
            if not edges or any(
                edge_active(e, s) for e, s in zip(edges, sources, strict=True) if s
            ):
                state.status = "ready"
                result.ready.append(node_id)
            else:
                state.status = "skipped"
                result.skipped.append(node_id)
            changed = True
    return result


@lru_cache(maxsize=4096)
def ready_on_success(graph: FlowGraph, node_id: str, branch: str | None) -> tuple[str, ...]:
    """Successors `plan()` will make ready as soon as `node_id` succeeds with `branch`, whatever
    the rest of the run: every incoming edge of theirs comes from `node_id` and one is active. The
    hot path moves them in the same message as the success (their pending guard still applies)."""
    done = StepState("succeeded", branch)
    found: list[str] = []
    for target in dict.fromkeys(e.target for e in graph.outgoing(node_id)):
        edges = graph.incoming(target)
        if all(e.source == node_id for e in edges) and any(edge_active(e, done) for e in edges):
            found.append(target)
    return tuple(found)


@lru_cache(maxsize=4096)
def chain_successors(graph: FlowGraph, node_id: str, branch: str | None) -> tuple[str, ...]:
    """`ready_on_success`, when those are ALL of the node's successors (none is skipped, none
    waits on another node): the success then changes exactly them, as `plan()` would decide, and
    the run keeps a ready step, so it stays as it is. Empty otherwise (the general path plans)."""
    ready = ready_on_success(graph, node_id, branch)
    if ready and {e.target for e in graph.outgoing(node_id)} == set(ready):
        return ready
    return ()


def run_state(states: dict[str, StepState]) -> str:
    """`succeeded` / `failed` when every step is terminal, else `waiting` or `running`."""
    statuses = [s.status for s in states.values()]
    if any(s == "failed" for s in statuses):
        return "failed"
    if all(s in STEP_TERMINAL for s in statuses):
        return "succeeded"
    if any(s in ("ready", "running", "retrying") for s in statuses):
        return "running"
    if any(s == "waiting" for s in statuses):
        return "waiting"
    return "running"
