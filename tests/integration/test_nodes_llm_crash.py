"""Crash tests for LLM steps: SIGKILL the worker while the model server is mid-stream, and while an
agent's second LLM turn is at the model (after its tool call committed).

The module runs on its own database and queue (`support/private_stack.py`) so that no other worker of
the session can pick the step up. After the kill a new worker starts; the run must finish, the step
that had committed before the crash must not run again, and the LLM step runs exactly once more with
the same Idempotency-Key (at-least-once for the external call). The mid-stream kill runs with every
process on each event loop (EVENT_LOOP: asyncio's own, the loop of Windows installs; uvloop, the
default wherever it is installed), and each process must have logged the loop it ran.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import psycopg
import pytest

from tests.integration.test_agent import agent_flow
from tests.support.checks import step_attempts
from tests.support.client import Api, linear_flow
from tests.support.durability import (
    assert_runs_durable,
    succeeded_events,
    wait_for,
    wait_runs_terminal,
)
from tests.support.fake_openai import FakeOpenAI
from tests.support.private_stack import (  # noqa: F401 -- fixtures
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.sink import Sink
from tests.support.stack import Proc, Stack

UVLOOP = sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None


def loop_logged(proc: Proc) -> str | None:
    text = proc.log_path.read_text(errors="replace")
    return next((name for name in ("uvloop", "asyncio") if f"event loop: {name}" in text), None)


@pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param("uvloop", marks=pytest.mark.skipif(not UVLOOP, reason="no uvloop here")),
    ],
)
def test_worker_killed_mid_stream_reruns_only_the_llm_step(
    stack: Stack,
    db: psycopg.Connection[Any],
    credentials: tuple[str, str],
    fake: FakeOpenAI,
    loop: str,
) -> None:
    env = {"EVENT_LOOP": loop}
    procs = [stack.start_api(extra_env=env), stack.start_orchestrator(extra_env=env)]
    worker = stack.start_worker(concurrency=2, extra_env=env)
    api = Api(stack.base_url, *credentials)
    params = {
        "model": "m",
        "prompt": "tell {{ t.text }}",
        "stream": True,
        "base_url": fake.base_url(delay=0.1, pad=30),
    }
    flow = api.create_flow(
        linear_flow(("t", "template", {"template": "a story"}), ("llm", "llm_chat", params))
    )
    rid = api.start_run(flow["id"])
    key = f"{rid}:llm:0"
    wait_for(lambda: fake.chunks[key] >= 5, 30, "the model stream to be under way")
    worker.kill()
    assert fake.calls[key] == 1
    again = stack.start_worker(concurrency=2, extra_env=env)
    wait_runs_terminal(db, [rid], timeout=60)
    assert_runs_durable(db, {rid: "succeeded"})
    assert step_attempts(db, rid) == {"in": 1, "t": 1, "llm": 2, "out": 1}
    assert succeeded_events(db, rid, "t") == 1 and succeeded_events(db, rid, "llm") == 1
    assert fake.calls[key] == 2, "one call per attempt, both with the step's Idempotency-Key"
    run = api.run(rid)
    assert run["outputs"]["text"] == "echo: tell a story " + " ".join(f"w{i}" for i in range(30))
    assert run["usage"]["completion_tokens"] == 34
    assert [loop_logged(p) for p in (*procs, worker, again)] == [loop] * 4


def test_agent_killed_mid_llm_turn_reruns_only_that_turn(
    stack: Stack,
    db: psycopg.Connection[Any],
    credentials: tuple[str, str],
    fake: FakeOpenAI,
    sink: Sink,
) -> None:
    """Turn 1 asks for the tool, the tool step commits, turn 2 is in flight at the model when the
    worker dies: turn 2 is asked again (same key), turn 1 and the tool call are not."""
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=4)
    api = Api(stack.base_url, *credentials)
    defn = agent_flow(fake, {"type": "http_request", "params": {"url": sink.url("/tool")}})
    defn["nodes"][1]["data"]["params"]["base_url"] = fake.base_url(first_delay=1.5)
    rid = api.start_run(api.create_flow(defn)["id"], {"q": "z"})
    turn1, turn2, tool = f"{rid}:a:0:1", f"{rid}:a:0:2", f"{rid}:a:1"
    wait_for(lambda: fake.calls[turn2] == 1, 60, "the second LLM turn to reach the model")
    worker.kill()  # mid-turn: the model has been asked, its answer is never committed
    stack.start_worker(concurrency=4)
    wait_runs_terminal(db, [rid], timeout=60)
    assert_runs_durable(db, {rid: "succeeded"}, sink)
    assert (fake.calls[turn1], fake.calls[turn2], sink.calls[tool]) == (1, 2, 1)
    run = api.run(rid)
    assert run["outputs"]["text"].startswith("tool said:")
