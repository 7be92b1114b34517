"""The `code` node in real flows: user Python in the sandbox with time/memory limits, no network
by default, none of the worker's environment, clear errors, JSON-only results, no retries of
deterministic failures. The user here holds `nodes:code` (granted by an admin over the API); the
attacks on the sandbox itself are in test_code_sandbox.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.client import Api, linear_flow
from tests.support.code_users import admin_api, granted_api
from tests.support.sink import Sink
from tests.support.stack import Stack

RETRY = {"py": {"retry": {"max_attempts": 3, "initial_interval": 0.1}}}


@pytest.fixture(scope="module")
def api(running_stack: Stack, database_url: str) -> Api:
    """An editor an admin granted `nodes:code` (overrides conftest's plain editor)."""
    admin = admin_api(running_stack.base_url, database_url)
    return granted_api(running_stack.base_url, database_url, admin)[0]


def run_code(api: Api, code: str, inputs: dict[str, Any] | None = None, **params: Any) -> dict:
    flow = api.create_flow(
        linear_flow(
            ("t", "template", {"template": "{{ inputs.word }}"}),
            ("py", "code", {"code": code, **params}),
            retry=RETRY,
        )
    )
    return api.wait_run(api.start_run(flow["id"], inputs or {"word": "hello"}), timeout=60)


def test_code_computes_a_json_result_from_its_input(api: Api) -> None:
    code = """
def main(input, inputs):
    print("working on", input["text"])
    return {"upper": input["text"].upper(), "n": len(inputs["word"]), "sq": [i * i for i in range(4)]}
"""
    run = run_code(api, code)
    assert run["status"] == "succeeded", run["error"]
    assert run["outputs"] == {
        "result": {"upper": "HELLO", "n": 5, "sq": [0, 1, 4, 9]},
        "stdout": "working on hello\n",
    }
    plain = run_code(api, "result = sum(range(101))")
    assert plain["outputs"]["result"] == 5050


@pytest.mark.parametrize(
    ("code", "params", "reason"),
    [
        ("x = 1\ny = (\n", {}, "syntax error at line 2"),
        ("def f():\n    return 1 / 0\nresult = f()", {}, "ZeroDivisionError at line 2"),
        ("result = {1, 2}", {}, "not JSON-serialisable"),
        ("result = float('nan')", {}, "not JSON-serialisable"),
        ("result = {'k': 'a\\x00b'}", {}, "NUL characters"),
        ("while True:\n    pass", {"timeout_s": 1}, "ran longer than 1s"),
        ("blob = bytearray(400 * 1024 * 1024)", {"memory_mb": 128}, "out of memory"),
    ],
)
def test_code_failures_are_clear_and_not_retried(
    api: Api, code: str, params: dict[str, Any], reason: str
) -> None:
    run = run_code(api, code, **params)
    assert run["status"] == "failed" and reason in run["error"]["message"], run["error"]
    assert api.steps(run)["py"]["attempt"] == 1


def test_code_has_no_network_unless_allowed(api: Api, sink: Sink) -> None:
    code = "import urllib.request\n" "result = urllib.request.urlopen(input['text']).status\n"
    url = sink.url("/from-code")
    denied = run_code(api, code, {"word": url})
    assert denied["status"] == "failed"
    assert "network access is disabled" in denied["error"]["message"]
    allowed = run_code(api, code, {"word": url}, allow_network=True)
    assert allowed["status"] == "succeeded" and allowed["outputs"]["result"] == 200
    assert sum(1 for r in sink.requests if r["path"] == "/from-code") == 1


def test_code_does_not_see_the_workers_environment(api: Api) -> None:
    code = "import os\nresult = sorted(k for k in os.environ if k in ('DATABASE_URL', 'SECRET_KEY', 'AMQP_URL'))"
    run = run_code(api, code)
    assert run["status"] == "succeeded" and run["outputs"]["result"] == []
