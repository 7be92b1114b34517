"""Inbound webhooks and the OpenAI-compatible endpoint, over real HTTP with real workers.

Webhooks start a run with the request body as inputs (JSON objects as they are, anything else as
`{"body", "content_type"}`) and answer 202; the OpenAI endpoint is exercised with the real `openai`
SDK authenticated by an API key: blocking and streamed completions (LLM tokens as deltas), the
endpoint name or flow id as `model`, and errors in OpenAI's shape that SDKs map to their exceptions.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack


@pytest.fixture
def owner(running_stack: Stack, database_url: str) -> Api:
    return Api(running_stack.base_url, *make_user(database_url))


def api_key(api: Api) -> str:
    r = api.http.post("/api/v1/api-keys", json={"name": "integration"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def named_flow(api: Api, definition: dict[str, Any], prefix: str = "ep") -> tuple[str, str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "definition": definition, "endpoint_name": name}
    r = api.http.post("/api/v1/flows", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), name


def sdk(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/api/v1/openai", api_key=key, max_retries=2)


ECHO = linear_flow()  # input -> output: the run's outputs are its inputs


def test_webhook_starts_a_run_with_the_json_body_as_inputs(owner: Api) -> None:
    fid, name = named_flow(owner, ECHO)
    key = api_key(owner)
    hook = httpx.Client(base_url=owner.http.base_url, headers={"x-api-key": key}, timeout=30)
    for ref in (name, fid):
        r = hook.post(f"/api/v1/webhook/{ref}", json={"event": "push", "n": 1})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "queued" and body["flow_id"] == fid
        run = owner.wait_run(body["run_id"])
        assert run["status"] == "succeeded" and run["outputs"] == {"event": "push", "n": 1}

    first = hook.post(f"/api/v1/webhook/{name}", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    again = hook.post(f"/api/v1/webhook/{name}", json={"a": 2}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["run_id"] == again.json()["run_id"]
    # an API key also works as a bearer token (what OpenAI-style clients send)
    bearer = {"authorization": f"Bearer {key}"}
    r = httpx.post(f"{owner.http.base_url}/api/v1/webhook/{name}", json={}, headers=bearer)
    assert r.status_code == 202, r.text


def test_webhook_non_json_bodies_arrive_as_body_and_content_type(owner: Api) -> None:
    fid, _ = named_flow(owner, ECHO)
    cases: list[tuple[bytes, str, dict[str, Any]]] = [
        (b"hello there", "text/plain", {"body": "hello there", "content_type": "text/plain"}),
        (
            b"a=1&b=2",
            "application/x-www-form-urlencoded",
            {"body": "a=1&b=2", "content_type": "application/x-www-form-urlencoded"},
        ),
        (b"[1, 2]", "application/json", {"body": [1, 2], "content_type": "application/json"}),
        (b'{"x": 1}', "application/vnd.api+json", {"x": 1}),
        (b"", "application/json", {}),
    ]
    for content, content_type, inputs in cases:
        r = owner.http.post(
            f"/api/v1/webhook/{fid}", content=content, headers={"content-type": content_type}
        )
        assert r.status_code == 202, r.text
        assert owner.wait_run(r.json()["run_id"])["inputs"] == inputs


def test_webhook_bad_requests_are_4xx_problems(owner: Api, running_stack: Stack) -> None:
    fid, name = named_flow(owner, ECHO)
    url = f"/api/v1/webhook/{fid}"
    r = owner.http.post(url, content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    r = owner.http.post(url, json={}, headers={"Idempotency-Key": "k" * 300})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "header.Idempotency-Key"
    assert owner.http.post(f"{url}?version=9", json={}).status_code == 422
    assert owner.http.post(f"{url}?version=abc", json={}).status_code == 422
    assert owner.http.post("/api/v1/webhook/no-such-flow", json={}).status_code == 404
    anonymous = httpx.post(f"{running_stack.base_url}/api/v1/webhook/{fid}", json={})
    assert anonymous.status_code == 401
    key = api_key(owner)
    key_id = [k for k in owner.http.get("/api/v1/api-keys").json() if key.startswith(k["prefix"])]
    assert owner.http.delete(f"/api/v1/api-keys/{key_id[0]['id']}").status_code == 204
    revoked = httpx.post(
        f"{running_stack.base_url}/api/v1/webhook/{name}", headers={"x-api-key": key}
    )
    assert revoked.status_code == 401


def test_webhook_runs_the_published_version_unless_one_is_named(owner: Api) -> None:
    fid, name = named_flow(owner, linear_flow(("t", "template", {"template": "v1"})))
    owner.http.put(
        f"/api/v1/flows/{fid}",
        json={"definition": linear_flow(("t", "template", {"template": "v2"}))},
    )
    owner.http.post(f"/api/v1/flows/{fid}/publish", json={"version": 1})
    r = owner.http.post(f"/api/v1/webhook/{name}", json={})
    assert owner.wait_run(r.json()["run_id"])["outputs"] == {"text": "v1"}
    r = owner.http.post(f"/api/v1/webhook/{name}?version=2", json={})
    assert owner.wait_run(r.json()["run_id"])["outputs"] == {"text": "v2"}


CHAT = linear_flow(
    (
        "t",
        "template",
        {"template": "you said {{ inputs.input_value }} after {{ inputs.messages | length }}"},
    )
)


def test_openai_sdk_chat_completion_runs_the_flow(owner: Api) -> None:
    fid, name = named_flow(owner, CHAT, "chat")
    client = sdk(str(owner.http.base_url), api_key(owner))
    messages: Any = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]
    for model in (name, fid):
        done = client.chat.completions.create(model=model, messages=messages, temperature=0.2)
        assert done.object == "chat.completion" and done.model == model
        assert done.choices[0].message.role == "assistant"
        assert done.choices[0].message.content == "you said second after 4"
        assert done.choices[0].finish_reason == "stop"
        assert done.usage is not None and done.usage.total_tokens == 0
        run_id = done.id.removeprefix("chatcmpl-")
        run = owner.run(run_id)
        assert run["inputs"]["input_value"] == "second"
        assert run["inputs"]["messages"][1] == {"role": "user", "content": "first"}

    # outputs without `text` answer as JSON
    raw_id, raw_name = named_flow(owner, ECHO)
    done = client.chat.completions.create(
        model=raw_id, messages=[{"role": "user", "content": "hi"}]
    )
    content = json.loads(done.choices[0].message.content or "")
    assert content["input_value"] == "hi" and content["messages"][0]["content"] == "hi"
    models = [m.id for m in client.models.list()]
    assert name in models and raw_name in models, "own flows are listed by endpoint name"


def test_openai_sdk_stream_without_tokens_sends_the_final_text(owner: Api) -> None:
    _, name = named_flow(owner, CHAT, "chat")
    client = sdk(str(owner.http.base_url), api_key(owner))
    chunks = list(
        client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "yo"}], stream=True
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "you said yo after 1"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_sdk_stream_forwards_llm_tokens_as_deltas(owner: Api, fake: FakeOpenAI) -> None:
    params = {
        "model": "m",
        "prompt": "{{ inputs.input_value }}",
        "stream": True,
        "base_url": fake.base_url(first_delay=1.0, delay=0.05, pad=8),
    }
    _, name = named_flow(owner, linear_flow(("llm", "llm_chat", params)), "llm")
    client = sdk(str(owner.http.base_url), api_key(owner))
    stream = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "hey"}], stream=True
    )
    deltas = [c.choices[0].delta.content for c in stream if c.choices[0].delta.content]
    expected = "echo: hey " + " ".join(f"w{i}" for i in range(8))
    assert "".join(deltas) == expected
    assert len(deltas) > 3, f"tokens arrive as they stream, not as one final delta: {deltas}"

    blocking = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "hey"}]
    )
    assert blocking.choices[0].message.content == expected
    assert blocking.usage is not None and blocking.usage.completion_tokens == len(expected.split())


def test_openai_errors_use_openais_shape_and_sdk_exceptions(
    owner: Api, fake: FakeOpenAI, running_stack: Stack, database_url: str
) -> None:
    _, name = named_flow(owner, CHAT, "chat")
    base = str(owner.http.base_url)
    client = sdk(base, api_key(owner))
    user_msg: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-flow", messages=user_msg)
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        sdk(base, "fsk_not-a-key").chat.completions.create(model=name, messages=user_msg)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=name, messages=[{"role": "system", "content": "x"}])
    assert bad.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=name, messages=[])

    url = f"{base}/api/v1/openai/chat/completions"
    headers = {"authorization": f"Bearer {owner.token}"}
    for body in ({"model": name}, {"model": name, "messages": "hi"}, {"messages": []}):
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    r = httpx.post(url, content=b"{", headers={**headers, "content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(url, json={"model": name, "messages": user_msg})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"

    # a failed run is a 502 the SDK must not retry (that would start the flow again)
    llm = {"model": "m", "prompt": "hi", "base_url": fake.base_url(status=401)}
    fid, failing = named_flow(owner, linear_flow(("llm", "llm_chat", llm)), "fail")
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model=failing, messages=user_msg)
    assert failed.value.status_code == 502 and failed.value.code == "run_failed"
    runs = owner.http.get("/api/v1/runs", params={"flow_id": fid}).json()["items"]
    assert len(runs) == 1 and runs[0]["status"] == "failed"
    stream = client.chat.completions.create(model=failing, messages=user_msg, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)


def test_openai_model_access_follows_shares(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    fid, name = named_flow(owner, CHAT, "chat")
    owner.http.post(f"/api/v1/flows/{fid}/publish")  # shared users run only a published version
    runner = Api(running_stack.base_url, *make_user(database_url, "runner"))
    viewer = Api(running_stack.base_url, *make_user(database_url, "viewer"))
    stranger = Api(running_stack.base_url, *make_user(database_url))
    user_msg: Any = [{"role": "user", "content": "x"}]
    for who, permission in ((runner, "run"), (viewer, "view")):
        email = who.http.get("/api/auth/me").json()["email"]
        body = {"email": email, "permission": permission}
        assert owner.http.post(f"/api/v1/flows/{fid}/shares", json=body).status_code == 202
    done = sdk(str(runner.http.base_url), api_key(runner)).chat.completions.create(
        model=fid, messages=user_msg
    )
    assert done.choices[0].message.content == "you said x after 1"
    assert runner.run(done.id.removeprefix("chatcmpl-"))["status"] == "succeeded"
    with pytest.raises(openai.NotFoundError):  # endpoint names are their owner's alone
        sdk(str(runner.http.base_url), api_key(runner)).chat.completions.create(
            model=name, messages=user_msg
        )
    viewer_client = openai.OpenAI(
        base_url=f"{viewer.http.base_url}/api/v1/openai", api_key=viewer.token, max_retries=0
    )
    with pytest.raises(openai.PermissionDeniedError):
        viewer_client.chat.completions.create(model=fid, messages=user_msg)
    stranger_client = openai.OpenAI(
        base_url=f"{stranger.http.base_url}/api/v1/openai", api_key=stranger.token
    )
    with pytest.raises(openai.NotFoundError):
        stranger_client.chat.completions.create(model=fid, messages=user_msg)
    assert fid not in [m.id for m in stranger_client.models.list()]
