"""When a step's preparation needs the database (`worker.context.reads_database`).

The worker borrows a pooled connection to prepare a step only when it must: the graph is not
cached, the step is a map item or an agent, its context rows were not read by the claim, or its
templates use secrets. Otherwise `build_context` runs without one (and fails loudly if it would
have needed one). Checked on a chain input -> t (template of `input`) -> output.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import decode_definition
from flowstudio.nodes import registry
from flowstudio.worker.context import build_context, reads_database
from tests.support.flows import chain

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def graph_of(template: str) -> FlowGraph:
    return FlowGraph.build(decode_definition(chain(("t", "template", {"template": template}))))


def step(node_id: str, node_type: str, tweaks: dict[str, Any] | None = None) -> ClaimedStep:
    return ClaimedStep(7, "run-1", node_id, 0, node_type, 1, 3, "flow-1", 1, {"x": 1}, "u", tweaks)


def spec(node_type: str) -> registry.NodeSpec:
    found = registry.get(node_type)
    assert found is not None
    return found


async def test_a_step_whose_claim_read_its_context_and_uses_no_secret_needs_no_connection() -> None:
    graph = graph_of("{{ input.x }}")
    t = step("t", "template")
    assert reads_database(t, graph, spec("template"), None)  # its predecessor's output: a query
    rows = [{"node_id": "in", "status": "succeeded", "branch": None, "output": {"x": 2}}]
    assert not reads_database(t, graph, spec("template"), rows)  # the eager claim read them
    port_input, context = await build_context(None, t, graph, spec("template"), "k", rows)
    assert port_input == {"x": 2} and context["in"] == {"x": 2}
    first = step("in", "input")
    assert not reads_database(first, graph, spec("input"), None)  # nothing upstream


async def test_secrets_and_unread_context_need_one() -> None:
    graph = graph_of("{{ secrets.API_TOKEN }}")
    t = step("t", "template")
    rows = [{"node_id": "in", "status": "succeeded", "branch": None, "output": {}}]
    assert reads_database(t, graph, spec("template"), rows)  # the owner's secrets
    tweaked = step("t", "template", {"t": {"template": "{{ secrets.OTHER }}"}})
    assert reads_database(tweaked, graph_of("plain"), spec("template"), rows)  # a tweak's secret
    with pytest.raises(AssertionError, match="no connection"):
        await build_context(None, t, graph, spec("template"), "k", None)
