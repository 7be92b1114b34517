"""Issue 9 item 4 replayed on real processes: token streams and worker logs.

- A model server that repeats the caller's multi-word API key streams it word by word: no SSE
  `token` event (nor their concatenation) carries it, the stored output is masked.
- A failing LLM call whose error repeats the key: the worker's log file never holds the value (the
  retry line that carries the error is there, masked).
"""

from __future__ import annotations

import json
import time
import uuid

from tests.support.client import Api, linear_flow
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack

KEY_WORDS = "alpha bravo charlie delta golf foxtrot"


def put_secret(api: Api, value: str) -> str:
    name = "K_" + uuid.uuid4().hex[:8]
    r = api.http.post("/api/v1/secrets", json={"name": name, "value": value})
    assert r.status_code == 201, r.text
    return name


def sse_events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":") and ":" in line:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        if fields:
            out.append(fields)
    return out


def test_streamed_answer_never_carries_a_multiword_secret_in_token_events(
    api: Api, fake: FakeOpenAI
) -> None:
    value = f"sk {KEY_WORDS} {uuid.uuid4().hex[:6]}"
    name = put_secret(api, value)
    params = {
        "model": "m",
        "api_key": "{{ secrets." + name + " }}",
        "prompt": "{{ inputs.input_value }}",
        "stream": True,
        "base_url": fake.base_url(delay=0.06, echo_key=1),  # one token event per word
    }
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))
    with api.http.stream(
        "POST", f"/api/v1/run/{flow['id']}?stream=true", json={"input_value": "tell me"}
    ) as r:
        assert r.status_code == 200
        events = sse_events("".join(r.iter_text()))
    tokens = [json.loads(e["data"])["text"] for e in events if e.get("event") == "token"]
    streamed = "".join(tokens)
    assert len(tokens) >= 2, "the answer came as several token events (one chunk per word)"
    assert streamed == "echo: tell me key ***", streamed
    assert not [t for t in tokens if any(w in t for w in KEY_WORDS.split())]
    end = json.loads(events[-1]["data"])
    assert end["outputs"]["text"] == "echo: tell me key ***"
    sent = [
        r for r in fake.chat_requests() if r["headers"].get("authorization") == f"Bearer {value}"
    ]
    assert sent, "the key really went to the model server, whole"


def test_a_failing_nodes_error_never_reaches_the_worker_log_in_clear(
    api: Api, fake: FakeOpenAI, running_stack: Stack
) -> None:
    value = f"sk-{uuid.uuid4().hex}-logged"
    name = put_secret(api, value)
    params = {
        "model": "m",
        "api_key": "{{ secrets." + name + " }}",
        "prompt": "hi",
        "retries": 1,
        "base_url": fake.base_url(fail=5, echo_key=1),  # 500 "boom for key <key>" every time
    }
    flow = api.create_flow(linear_flow(("llm", "llm_chat", params)))
    run = api.wait_run(api.start_run(flow["id"]))
    assert run["status"] == "failed"
    assert "boom for key ***" in api.steps(run)["llm"]["error"]["message"]
    time.sleep(0.5)  # let the log lines reach the files
    logs = "".join(
        p.log_path.read_text(errors="replace") for p in running_stack.procs if p.log_path.exists()
    )
    assert "boom for key ***" in logs, "the retry line with the server's error is logged"
    assert value not in logs
