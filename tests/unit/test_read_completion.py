"""`llm.read_completion`: the node's output from a chat completion's raw JSON (the SDK's typed
layer is skipped on this path): text, usage, tool calls (arguments as a JSON string or as an
object, as some OpenAI-compatible servers send them), and a clear NodeError for a malformed
answer."""

from __future__ import annotations

import json

import pytest

from flowstudio.nodes.llm import read_completion
from flowstudio.nodes.registry import NodeError


def _raw(body: object) -> bytes:
    return json.dumps(body).encode()


def test_a_plain_answer() -> None:
    out = read_completion(
        _raw(
            {
                "model": "m1",
                "choices": [
                    {"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )
    )
    assert out == {
        "text": "hi",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "model": "m1",
        "finish_reason": "stop",
        "tool_calls": [],
    }


def test_tool_calls_and_missing_usage() -> None:
    out = read_completion(
        _raw(
            {
                "model": "m1",
                "choices": [
                    {
                        "message": {
                            "content": None,
                            "tool_calls": [
                                {"id": "a", "function": {"name": "f", "arguments": '{"x": 1}'}},
                                {"id": "b", "function": {"name": "g", "arguments": {"y": 2}}},
                                {"id": "c", "function": {"name": "h", "arguments": "not json"}},
                                {"id": "d"},  # no function: not a call we can make
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
            }
        )
    )
    assert out["text"] == ""
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert [(c["id"], c["name"], c["arguments"]) for c in out["tool_calls"]] == [
        ("a", "f", {"x": 1}),
        ("b", "g", {"y": 2}),
        ("c", "h", "not json"),
    ]


def test_usage_total_is_summed_when_absent_and_junk_counts_are_zero() -> None:
    out = read_completion(
        _raw(
            {
                "choices": [{"message": {"content": "x"}}],
                "usage": {"prompt_tokens": 4, "completion_tokens": "many"},
            }
        )
    )
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b"{}", _raw({"choices": []}), _raw({"choices": ["x"]})],
)
def test_a_malformed_answer_is_a_node_error(raw: bytes) -> None:
    with pytest.raises(NodeError):
        read_completion(raw)
