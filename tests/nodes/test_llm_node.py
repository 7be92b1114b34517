"""`llm_chat` run in-process against the fake OpenAI server: answers, streamed tokens, usage, errors.

Each call carries the step's Idempotency-Key (`run:node:item`), so the fake's counters per key tell
what one step sent; nothing here needs a worker, a broker or a database.
"""

from __future__ import annotations

import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.noderun import run_node

pytestmark = pytest.mark.anyio


def chat(fake: FakeOpenAI, **params: object) -> dict[str, object]:
    return {"model": "fake-1", "api_key": "k", "base_url": fake.base_url(), **params}


async def test_llm_chat_answers_the_rendered_prompt_and_records_usage(fake: FakeOpenAI) -> None:
    run = await run_node("llm_chat", chat(fake, prompt="hi {{ inputs.name }}"), {"name": "ada"})
    out = run.output
    assert out["text"] == "echo: hi ada" and out["finish_reason"] == "stop"
    usage = out["usage"]
    assert usage["prompt_tokens"] == 2 and usage["completion_tokens"] == 3
    assert usage["total_tokens"] == 5
    (req,) = fake.chat_requests(run.step.run_id)
    assert req["key"] == f"{run.step.run_id}:n:0"
    assert req["body"]["model"] == "fake-1"
    assert req["body"]["messages"][-1] == {"role": "user", "content": "hi ada"}
    assert run.tokens == []  # not streamed: nothing published live


async def test_llm_chat_feeding_an_output_streams_its_tokens(fake: FakeOpenAI) -> None:
    params = chat(fake, prompt="tell me", base_url=fake.base_url(pad=40))
    run = await run_node("llm_chat", params, feeds_output=True)
    out = run.output
    assert out["text"].startswith("echo: tell me w0 w1") and out["text"].endswith("w39")
    assert run.streamed_text == out["text"]  # every token went out live, in order
    assert [t["seq"] for t in run.tokens] == list(range(len(run.tokens)))
    assert {(t["run_id"], t["node_id"], t["attempt"]) for t in run.tokens} == {
        (run.step.run_id, "n", 1)
    }
    assert out["usage"]["completion_tokens"] == len(out["text"].split())


async def test_a_rate_limited_call_is_retried_inside_the_step(fake: FakeOpenAI) -> None:
    params = chat(fake, prompt="hi", base_url=fake.base_url(rate_limit=1, retry_after=0))
    run = await run_node("llm_chat", params)
    assert run.output["text"] == "echo: hi"
    assert fake.calls[f"{run.step.run_id}:n:0"] == 2


async def test_a_refused_key_fails_the_step_without_retry(fake: FakeOpenAI) -> None:
    run = await run_node("llm_chat", chat(fake, prompt="hi", base_url=fake.base_url(status=401)))
    assert run.error["type"] == "node_error"
    assert run.outcome.retryable is False  # type: ignore[union-attr]


async def test_a_slow_model_hits_the_nodes_timeout(fake: FakeOpenAI) -> None:
    params = chat(fake, prompt="hi", base_url=fake.base_url(first_delay=5))
    run = await run_node("llm_chat", params, data={"timeout_s": 0.3})
    assert run.error["type"] == "timeout" and run.outcome.retryable  # type: ignore[union-attr]
