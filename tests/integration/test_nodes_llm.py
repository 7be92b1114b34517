"""LLM nodes in real flows on the real engine, against a local OpenAI-compatible server over HTTP.

`llm_chat` answers with usage (summed in the run detail), sends the secret API key only to the model
server (never into outputs or the event log) with the step's Idempotency-Key, returns tool calls and
structured JSON, parks the step durably for a 429's Retry-After (provider limits,
tests/integration/test_provider_limits.py), retries 5xx within the step and then hands over to the
engine's step retries, fails at once on 401 and on a private base_url, and streams tokens into the run's SSE
stream without writing them to the event log (by default only when it feeds an output node and the run
is not a batch item). `chat_memory` carries a conversation across runs.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg
import pytest

from tests.integration.test_batches import upload, wait_batch
from tests.integration.test_sse_live import sse_stream
from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.fake_openai import FakeOpenAI
from tests.support.flows import edge, flow_def, node


def secret(api: Api, value: str) -> str:
    name = "K_" + uuid.uuid4().hex[:8]
    r = api.http.post("/api/v1/secrets", json={"name": name, "value": value})
    assert r.status_code == 201, r.text
    return name


def sse_events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in block.split("\n") if line and not line.startswith(":")
        )
        if fields:
            out.append({k: v.strip() for k, v in fields.items()})
    return out


def test_llm_chat_answers_with_usage_and_keeps_the_key_secret(
    api: Api, fake: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    key = "sk-test-" + uuid.uuid4().hex
    name = secret(api, key)
    params = {
        "model": "fake-1",
        "base_url": fake.base_url(),
        "api_key": "{{ secrets." + name + " }}",
        "system": "be brief",
        "prompt": "Hello {{ inputs.name }}",
        "temperature": 0.1,
        "max_tokens": 50,
    }
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))
    run = api.wait_run(api.start_run(flow["id"], {"name": "ada"}))
    assert run["status"] == "succeeded", run["error"]
    out = run["outputs"]
    assert out["text"] == "echo: Hello ada"
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    assert run["usage"] == out["usage"]
    (req,) = fake.chat_requests(run["id"])
    assert req["headers"]["authorization"] == f"Bearer {key}"
    assert req["key"] == f"{run['id']}:llm:0"
    assert req["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert req["body"]["temperature"] == 0.1 and req["body"]["max_tokens"] == 50
    stored = db.execute(
        """SELECT coalesce(string_agg(e.data::text, ''), '') || coalesce(
               (SELECT string_agg(io.output::text || io.input::text, '') FROM step_io io
                JOIN steps s ON s.id = io.step_id WHERE s.run_id = %s), '')
           FROM run_events e WHERE e.run_id = %s""",
        (run["id"], run["id"]),
    ).fetchone()[0]
    assert key not in stored and key not in json.dumps(run)
    assert_event_log_consistent(db, run["id"])


def test_llm_chat_returns_tool_calls_and_structured_json(api: Api, fake: FakeOpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "search",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["ham", "spam"]}},
        "required": ["label"],
    }
    base = {"model": "fake-1", "base_url": fake.base_url()}
    llms = ("tools", "streamed_tools", "classify")
    defn = flow_def(
        [
            node("in", "input"),
            node("tools", "llm_chat", **base, prompt="find {{ inputs.q }}", tools=[tool]),
            node("streamed_tools", "llm_chat", **base, prompt="find it", tools=[tool], stream=True),
            node(
                "classify", "llm_chat", **base, prompt="{{ inputs.q }} is spam", json_schema=schema
            ),
            node("out", "merge"),
        ],
        [*(edge("in", n) for n in llms), *(edge(n, "out") for n in llms)],
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"q": "cats"}))
    assert run["status"] == "succeeded", run["error"]
    steps = api.steps(run)
    call = steps["tools"]["output"]["tool_calls"][0]
    assert call["name"] == "search_docs" and call["arguments"] == {"query": "find cats"}
    assert steps["tools"]["output"]["finish_reason"] == "tool_calls"
    streamed = steps["streamed_tools"]["output"]["tool_calls"][0]
    assert streamed["arguments"] == {"query": "find it"} and streamed["id"] == "call_1"
    assert steps["classify"]["output"]["json"] == {"label": "spam"}
    assert "tool_calls" not in steps["classify"]["output"]
    (req,) = fake.chat_requests(f"{run['id']}:classify")
    assert req["body"]["response_format"]["type"] == "json_schema"
    assert req["body"]["response_format"]["json_schema"]["schema"] == schema
    merged = steps["out"]["output"]
    assert set(merged) == {"tools", "streamed_tools", "classify"}
    assert run["usage"]["total_tokens"] == sum(
        steps[n]["output"]["usage"]["total_tokens"] for n in ("tools", "streamed_tools", "classify")
    )


def test_rate_limit_retry_after_parks_the_step_without_using_up_its_attempts(
    api: Api, fake: FakeOpenAI
) -> None:
    params = {"model": "m", "prompt": "hi", "base_url": fake.base_url(rate_limit=2, retry_after=1)}
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))  # max_attempts 1
    started = time.monotonic()
    run = api.wait_run(api.start_run(flow["id"]))
    assert run["status"] == "succeeded" and run["outputs"]["text"] == "echo: hi"
    assert time.monotonic() - started >= 2.0, "two Retry-After: 1 waits"
    llm = api.steps(run)["llm"]
    assert llm["attempt"] == 3 and llm["max_attempts"] == 3  # each park gave its attempt back
    assert fake.calls[f"{run['id']}:llm:0"] == 3


def test_spent_in_step_retries_hand_over_to_the_step_retry_policy(
    api: Api, fake: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    params = {
        "model": "m",
        "prompt": "hi",
        "retries": 1,
        "base_url": fake.base_url(fail=3),
    }
    retry = {"llm": {"retry": {"max_attempts": 3, "initial_interval": 0.2}}}
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params), retry=retry))
    run = api.wait_run(api.start_run(flow["id"]))
    assert run["status"] == "succeeded"
    assert api.steps(run)["llm"]["attempt"] == 2
    assert fake.calls[f"{run['id']}:llm:0"] == 4
    (err,) = db.execute(
        "SELECT data FROM run_events WHERE run_id = %s AND to_status = 'retrying'", (run["id"],)
    ).fetchone()
    assert "500" in err["message"] and "after 2 tries" in err["message"]
    assert_event_log_consistent(db, run["id"])


def test_auth_error_and_private_base_url_fail_without_retrying(api: Api, fake: FakeOpenAI) -> None:
    retry = {"llm": {"retry": {"max_attempts": 3, "initial_interval": 0.1}}}
    for base_url, reason in ((fake.base_url(status=401), "401"), ("http://10.9.8.7/v1", "refused")):
        params = {"model": "m", "prompt": "hi", "base_url": base_url}
        flow = api.create_flow(linear_flow(("llm", "llm_chat", params), retry=retry))
        run = api.wait_run(api.start_run(flow["id"]))
        assert run["status"] == "failed" and reason in run["error"]["message"]
        assert api.steps(run)["llm"]["attempt"] == 1


def test_streamed_tokens_reach_the_sse_stream_but_not_the_event_log(
    api: Api, fake: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    # tokens are live only: the model answers once the test's stream is open (a gate, not a delay)
    gate = uuid.uuid4().int % 10**9
    params = {
        "model": "m",
        "prompt": "stream me",
        "stream": True,
        "base_url": fake.base_url(gate=gate, delay=0.05, pad=12),
    }
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))
    rid = api.start_run(flow["id"])
    events = []
    for item in sse_stream(api, rid):
        if isinstance(item, dict):
            if "id" in item:  # a logged event came: the stream is subscribed to tokens too
                fake.open_gate(gate)
            events.append(item)
    tokens = [json.loads(e["data"]) for e in events if e.get("event") == "token"]
    run = api.run(rid)
    assert run["status"] == "succeeded"
    text = run["outputs"]["text"]
    assert text == "echo: stream me " + " ".join(f"w{i}" for i in range(12))
    assert len(tokens) > 3, "a slow stream is published token by token"
    assert [t["seq"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["text"] for t in tokens) == text
    assert {(t["node_id"], t["attempt"]) for t in tokens} == {("llm", 1)}
    assert all("id" not in e for e in events if e.get("event") == "token")
    assert events[-1]["event"] == "end"
    kinds = {k for (k,) in db.execute("SELECT kind FROM run_events WHERE run_id = %s", (rid,))}
    assert kinds <= {"run", "step"}, kinds
    assert run["outputs"]["usage"]["completion_tokens"] == len(text.split())


@pytest.mark.parametrize("stream", [True, None, False], ids=["flag", "default", "off"])
def test_sync_streaming_run_carries_tokens_then_outputs(
    api: Api, fake: FakeOpenAI, stream: bool | None
) -> None:
    # no per-node flag needed: an LLM node that feeds an output streams by default
    params: dict[str, Any] = {
        "model": "m",
        "prompt": "{{ inputs.input_value }}",
        "base_url": fake.base_url(first_delay=1.0, delay=0.02, pad=5),
    }
    if stream is not None:
        params["stream"] = stream
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))
    with api.http.stream(
        "POST", f"/api/v1/run/{flow['id']}?stream=true", json={"input_value": "hey"}
    ) as r:
        events = sse_events("".join(r.iter_text()))
    tokens = "".join(json.loads(e["data"])["text"] for e in events if e.get("event") == "token")
    end = json.loads(events[-1]["data"])
    assert end["outputs"]["text"] == "echo: hey w0 w1 w2 w3 w4"
    assert tokens == ("" if stream is False else end["outputs"]["text"])


def test_chat_memory_carries_the_conversation_across_runs(
    api: Api, fake: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    session = "s-" + uuid.uuid4().hex[:8]
    defn = linear_flow(
        ("mem", "chat_memory", {"session_id": "{{ inputs.session }}", "mode": "load"}),
        ("p", "prompt", {"template": "Q: {{ inputs.q }}"}),
        (
            "llm",
            "llm_chat",
            {
                "model": "m",
                "base_url": fake.base_url(),
                "history": "{{ mem.messages | tojson }}",
                "prompt": "{{ p.text }}",
            },
        ),
        (
            "save",
            "chat_memory",
            {
                "session_id": "{{ inputs.session }}",
                "mode": "append",
                "user": "{{ p.text }}",
                "assistant": "{{ llm.text }}",
            },
        ),
    )
    flow = api.create_flow(defn)
    first = api.wait_run(api.start_run(flow["id"], {"session": session, "q": "one"}))
    second = api.wait_run(api.start_run(flow["id"], {"session": session, "q": "two"}))
    assert first["status"] == second["status"] == "succeeded"
    (req,) = fake.chat_requests(second["id"])
    assert req["body"]["messages"] == [
        {"role": "user", "content": "Q: one"},
        {"role": "assistant", "content": "echo: Q: one"},
        {"role": "user", "content": "Q: two"},
    ]
    assert second["outputs"]["appended"] == 2 and len(second["outputs"]["messages"]) == 4
    owners = db.execute(
        "SELECT DISTINCT owner_id::text FROM chat_messages WHERE session_id = %s", (session,)
    ).fetchall()
    (owner,) = db.execute(
        "SELECT owner_id::text FROM runs WHERE id = %s", (second["id"],)
    ).fetchone()
    assert owners == [(owner,)]
    assert_no_double_success(db, second["id"])


def test_concurrent_llm_runs_get_their_own_answers(api: Api, fake: FakeOpenAI) -> None:
    params = {"model": "m", "base_url": fake.base_url(), "prompt": "{{ inputs.n }}"}
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))
    ids = [api.start_run(flow["id"], {"n": i}) for i in range(8)]
    assert [api.wait_run(rid)["outputs"]["text"] for rid in ids] == [f"echo: {i}" for i in range(8)]


def test_an_llm_feeding_an_output_streams_except_in_a_batch_item(
    api: Api, fake: FakeOpenAI
) -> None:
    """`stream: null` (the default): a run's answer streams (a chat client waits on it); a batch
    item's does not (nobody waits on its tokens; the claim tells the worker it is one)."""
    tag = uuid.uuid4().hex[:8]
    params = {"model": "fake-1", "base_url": fake.base_url(), "prompt": tag + " {{ inputs.n }}"}
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))
    assert api.wait_run(api.start_run(flow["id"], {"n": "run"}))["status"] == "succeeded"
    r = upload(api, flow["id"], json.dumps([{"n": "b1"}, {"n": "b2"}]), "application/json")
    assert r.status_code == 202, r.text
    assert wait_batch(api, r.json()["id"], timeout=60)["status"] == "succeeded"
    streamed = {
        json.dumps(req["body"]["messages"][-1]["content"]): bool(req["body"].get("stream"))
        for req in fake.chat_requests()
        if tag in json.dumps(req["body"]["messages"])
    }
    assert streamed == {
        json.dumps(f"{tag} run"): True,
        json.dumps(f"{tag} b1"): False,
        json.dumps(f"{tag} b2"): False,
    }
