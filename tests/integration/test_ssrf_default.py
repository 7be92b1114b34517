"""The egress guard's default: with no HTTP_ALLOWED_HOSTS at all, loopback is refused.

Every other test runs with `HTTP_ALLOWED_HOSTS=127.0.0.1,localhost` (its sinks live on loopback); this
module starts its own processes without it (own database and queue, `support/private_stack.py`) and
replays an SSRF: an `http_request` and an LLM `base_url` aimed at a live local server, by IPv4
(dotted, another 127/8 address, one decimal number), by name and by IPv6.
Each step fails at once naming the refusal, and the local server gets no request.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.client import Api, linear_flow
from tests.support.fake_openai import FakeOpenAI
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.sink import Sink
from tests.support.stack import Stack


def test_default_egress_guard_refuses_loopback_for_http_and_llm(
    stack: Stack,
    credentials: tuple[str, str],
    db: psycopg.Connection[Any],
    sink: Sink,
    fake: FakeOpenAI,
) -> None:
    stack.env.pop("HTTP_ALLOWED_HOSTS", None)  # the default: nothing private is allowed
    stack.start_api()
    stack.start_orchestrator()
    stack.start_worker(concurrency=4)
    api = Api(stack.base_url, *credentials)
    targets = [
        sink.url("/ssrf"),
        f"http://localhost:{sink.port}/ssrf",
        f"http://[::1]:{sink.port}/ssrf",
        f"http://127.1.2.3:{sink.port}/ssrf",
        f"http://2130706433:{sink.port}/ssrf",  # 127.0.0.1 as one decimal number
    ]
    retry = {"retry": {"max_attempts": 3, "initial_interval": 0.1}}
    runs = [
        api.start_run(
            api.create_flow(
                linear_flow(("call", "http_request", {"url": url}), retry={"call": retry})
            )["id"]
        )
        for url in targets
    ]
    llm = {"model": "m", "prompt": "hi", "base_url": fake.base_url()}
    runs.append(api.start_run(api.create_flow(linear_flow(("call", "llm_chat", llm)))["id"]))
    for rid in runs:
        run = api.wait_run(rid, timeout=60)
        call = api.steps(run)["call"]
        assert run["status"] == "failed", run
        assert "refused" in call["error"]["message"], call["error"]
        assert call["attempt"] == 1, "a refused target is not retried"
    assert sink.requests == [] and fake.requests == []
