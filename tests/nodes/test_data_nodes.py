"""`template` and `json_transform` run in-process: rendering from inputs and upstream outputs,
JMESPath over the port input, and their failures (non-retryable, naming the node)."""

from __future__ import annotations

import pytest

from tests.support.noderun import run_node

pytestmark = pytest.mark.anyio


async def test_template_renders_inputs_and_upstream_outputs() -> None:
    run = await run_node(
        "template",
        {"template": "hi {{ inputs.name }}, {{ prev.text | upper }}"},
        {"name": "ada"},
        upstream={"prev": {"text": "from before"}},
    )
    assert run.output == {"text": "hi ada, FROM BEFORE"}


async def test_a_broken_template_fails_without_retry_and_names_the_node() -> None:
    run = await run_node("template", {"template": "{{ inputs.name "}, node_id="greet")
    assert run.outcome.retryable is False  # type: ignore[union-attr]
    assert "node 'greet'" in run.error["message"]


async def test_json_transform_searches_the_port_input() -> None:
    items = {"items": [{"name": "a", "score": 3}, {"name": "b", "score": 8}]}
    run = await run_node("json_transform", {"expression": "items[?score > `5`].name"}, items)
    assert run.output == {"result": ["b"]}


async def test_json_transform_reads_rendered_data_and_refuses_a_bad_expression() -> None:
    run = await run_node(
        "json_transform",
        {"expression": "a.b", "data": "{{ prev | tojson }}"},
        upstream={"prev": {"a": {"b": 42}}},
    )
    assert run.output == {"result": 42}
    bad = await run_node("json_transform", {"expression": "items[?"}, {"items": []})
    assert "JMESPath" in bad.error["message"] and bad.outcome.retryable is False  # type: ignore[union-attr]
