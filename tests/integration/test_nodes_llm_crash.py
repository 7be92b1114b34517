"""Crash test for a streaming LLM step: SIGKILL the worker while the model server is mid-stream.

The module runs on its own database and queue (`support/private_stack.py`) so that no other worker of
the session can pick the step up. After the kill a new worker starts; the run must finish, the step
that had committed before the crash must not run again, and the LLM step runs exactly once more with
the same Idempotency-Key (at-least-once for the external call).
"""

from __future__ import annotations

from typing import Any

import psycopg

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
from tests.support.stack import Stack


def test_worker_killed_mid_stream_reruns_only_the_llm_step(
    stack: Stack, db: psycopg.Connection[Any], credentials: tuple[str, str], fake: FakeOpenAI
) -> None:
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=2)
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
    stack.start_worker(concurrency=2)
    wait_runs_terminal(db, [rid], timeout=60)
    assert_runs_durable(db, {rid: "succeeded"})
    assert step_attempts(db, rid) == {"in": 1, "t": 1, "llm": 2, "out": 1}
    assert succeeded_events(db, rid, "t") == 1 and succeeded_events(db, rid, "llm") == 1
    assert fake.calls[key] == 2, "one call per attempt, both with the step's Idempotency-Key"
    run = api.run(rid)
    assert run["outputs"]["text"] == "echo: tell a story " + " ".join(f"w{i}" for i in range(30))
    assert run["usage"]["completion_tokens"] == 34
