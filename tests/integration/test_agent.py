"""The durable agent loop on the real engine, against a local OpenAI-compatible server: a tool that is
a node, a tool that is a flow (child run), and a failed tool whose error goes back to the model. The
crash cases (a worker killed mid-tool-call, mid-LLM-turn) are in test_isolated_processes.py and
test_nodes_llm_crash.py, on their own database."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.fake_openai import FakeOpenAI


def agent_flow(fake: FakeOpenAI, tool: dict[str, Any]) -> dict[str, Any]:
    return linear_flow(
        (
            "a",
            "agent",
            {
                "model": "fake-model",
                "base_url": fake.base_url(),
                "api_key": "k",
                "prompt": "look up {{ inputs.q }}",
                "system": "you are helpful",
                "tools": [
                    {
                        "name": "lookup",
                        "description": "looks things up",
                        "parameters": {
                            "type": "object",
                            "properties": {"query": {"type": "string"}},
                        },
                        **tool,
                    }
                ],
            },
        )
    )


def test_agent_calls_a_node_tool_as_its_own_step(
    api: Api, fake: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    tool = {"type": "template", "params": {"template": "found({{ args.query }})"}}
    rid = api.start_run(api.create_flow(agent_flow(fake, tool))["id"], {"q": "cats"})
    run = api.wait_run(rid, timeout=60)
    assert run["status"] == "succeeded", run["error"]
    assert run["outputs"]["text"] == 'tool said: {"text": "found(look up cats)"}'
    assert run["outputs"]["turns"] == 2 and run["outputs"]["usage"]["total_tokens"] > 0
    steps = [s for s in run["steps"] if s["node_id"] == "a"]
    tool_step = next(s for s in steps if s["item_index"] == 1)
    assert tool_step["node_type"] == "template" and tool_step["status"] == "succeeded"
    assert tool_step["input"]["name"] == "lookup"
    assert [r["key"] for r in fake.chat_requests(rid)] == [f"{rid}:a:0:1", f"{rid}:a:0:2"]
    assert_event_log_consistent(db, rid)
    assert_no_double_success(db, rid)


def test_agent_tool_can_be_a_flow(api: Api, fake: FakeOpenAI) -> None:
    child = api.create_flow(
        linear_flow(("t", "template", {"template": "flow got {{ inputs.query }}"}))
    )
    rid = api.start_run(
        api.create_flow(agent_flow(fake, {"flow_id": child["id"]}))["id"], {"q": "x"}
    )
    run = api.wait_run(rid, timeout=60)
    assert run["status"] == "succeeded", run["error"]
    assert "flow got look up x" in run["outputs"]["text"]


def test_failed_tool_error_goes_back_to_the_model(api: Api, fake: FakeOpenAI) -> None:
    tool = {"type": "fail", "params": {"message": "db offline", "retryable": False}}
    run = api.wait_run(api.start_run(api.create_flow(agent_flow(fake, tool))["id"], {"q": "y"}))
    assert run["status"] == "succeeded"
    assert run["outputs"]["text"] == "tool said: error: db offline"
