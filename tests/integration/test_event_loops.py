"""EVENT_LOOP end to end: the whole stack on asyncio's own loop (the loop of Windows installs, and
EVENT_LOOP=asyncio elsewhere) runs an LLM flow whose worker is SIGKILLed mid-stream, as on uvloop
(the default wherever it is installed, and the loop of the rest of the suite): the run finishes,
the committed step does not run again, the LLM step runs once more. Each process logs its loop.

The module runs on its own database and queue (`support/private_stack.py`).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import psycopg
import pytest

from tests.support.checks import step_attempts
from tests.support.client import Api, linear_flow
from tests.support.durability import assert_runs_durable, wait_for, wait_runs_terminal
from tests.support.fake_openai import FakeOpenAI
from tests.support.private_stack import (  # noqa: F401 -- fixtures
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Proc, Stack

UVLOOP = sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None


def loop_logged(proc: Proc) -> str:
    text = proc.log_path.read_text(errors="replace")
    return (
        "uvloop"
        if "event loop: uvloop" in text
        else "asyncio" if "event loop: asyncio" in text else "?"
    )


@pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param("uvloop", marks=pytest.mark.skipif(not UVLOOP, reason="no uvloop here")),
    ],
)
def test_a_worker_killed_mid_stream_on_each_loop(
    stack: Stack,
    db: psycopg.Connection[Any],
    credentials: tuple[str, str],
    fake: FakeOpenAI,
    loop: str,
) -> None:
    env = {"EVENT_LOOP": loop}
    api_proc = stack.start_api(extra_env=env)
    orchestrator = stack.start_orchestrator(extra_env=env)
    worker = stack.start_worker(concurrency=2, extra_env=env)
    api = Api(stack.base_url, *credentials)
    params = {
        "model": "m",
        "prompt": "tell {{ t.text }}",
        "stream": True,
        "base_url": fake.base_url(delay=0.1, pad=30),
    }
    flow = api.create_flow(
        linear_flow(
            ("t", "template", {"template": f"a story on {loop}"}), ("llm", "llm_chat", params)
        )
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
    run = api.run(rid)
    assert run["outputs"]["text"].startswith(f"echo: tell a story on {loop}")
    assert [loop_logged(p) for p in (api_proc, orchestrator, worker, again)] == [loop] * 4
