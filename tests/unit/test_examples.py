"""Every example flow under examples/ is a valid flow: `validate_definition` finds no problem.

Each file is the body of POST /api/v1/flows ({name, description, definition}). The agent example
uses node type `agent`, which the engine adds separately: until it exists it is an expected failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowstudio.flows.validate import validate_definition
from flowstudio.nodes import registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.json"))
NEEDS_AGENT = pytest.mark.xfail(
    registry.get("agent") is None,
    reason="node type `agent` does not exist yet (the engine lead implements it)",
    strict=False,
)


def test_the_examples_are_there() -> None:
    names = {f.stem for f in FILES}
    assert {"rag_chatbot", "batch_classifier", "approval_workflow", "agent_two_tools"} <= names


@pytest.mark.parametrize(
    "path",
    [pytest.param(f, id=f.stem, marks=NEEDS_AGENT if "agent" in f.stem else ()) for f in FILES],
)
def test_example_flow_validates(path: Path) -> None:
    body = json.loads(path.read_text())
    assert body["name"] and body["description"]
    _, errors = validate_definition(body["definition"])
    assert errors == [], [f"{e.node_id}: {e.path}: {e.reason}" for e in errors]
