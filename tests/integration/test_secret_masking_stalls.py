"""Issue 9 items 4 and 5 replayed on real processes: token streams, worker logs, template and regex stalls.

- A model server that repeats the caller's multi-word API key streams it word by word: no SSE
  `token` event (nor their concatenation) carries it, the stored output is masked.
- A failing LLM call whose error repeats the key: the worker's log file never holds the value (the
  retry line that carries the error is there, masked).
- A single worker: a template with a loop (within the loop budget, heavy per iteration) on a node
  with `timeout_s: 3`, and a catastrophic regex with an author-chosen 6 s timeout (server cap set to
  3 s here), do not hold the event loop: a fast run started after them finishes first,
  `/health/live` answers meanwhile, the template fails at its node timeout, the regex at the server
  cap. The attack as filed (nested `range(10000)` loops, `timeout_s: 1`) fails non-retryably on the
  loop budget, and `'x' * 10**8` is refused by the size limit.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import make_user
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


HEAVY_TEMPLATE = (
    "{% set s = 'x' * 900000 %}"
    "{% for i in range(10000) %}{{ (s | replace('x', 'y')) | length > 0 }}{% endfor %}"
)
CATASTROPHIC = {"operation": "match", "pattern": "(a|aa)+$", "text": "a" * 40 + "b", "timeout_s": 6}


@pytest.fixture
def one_worker(base_env: dict[str, str], tmp_path: Any, database_url: str) -> Iterator[Api]:
    stack = Stack(dict(base_env), tmp_path)
    try:
        stack.start_api()
        stack.start_orchestrator()
        stack.start_worker(concurrency=4, extra_env={"REGEX_TIMEOUT_MAX_S": "3"})
        yield Api(stack.base_url, *make_user(database_url))
    finally:
        stack.stop_all()


def test_heavy_templates_and_regexes_never_hold_the_worker(one_worker: Api) -> None:
    api = one_worker
    heavy_t = api.create_flow(
        {
            "nodes": [
                {"id": "in", "type": "input", "data": {"params": {}}},
                {
                    "id": "t",
                    "type": "template",
                    "data": {"params": {"template": HEAVY_TEMPLATE}, "timeout_s": 3},
                },
                {"id": "out", "type": "output", "data": {"params": {}}},
            ],
            "edges": [{"source": "in", "target": "t"}, {"source": "t", "target": "out"}],
        }
    )
    heavy_rx = api.create_flow(linear_flow(("rx", "text_ops", CATASTROPHIC)))
    fast_flow = api.create_flow(linear_flow(("f", "template", {"template": "ok"})))
    heavy = {"t": api.start_run(heavy_t["id"]), "rx": api.start_run(heavy_rx["id"])}
    deadline = time.monotonic() + 30
    while not all(
        api.steps(api.run(rid))[node]["status"] == "running" for node, rid in heavy.items()
    ):
        assert time.monotonic() < deadline, [api.run(rid) for rid in heavy.values()]
        time.sleep(0.02)
    live: list[int] = []

    def probe() -> None:
        live.append(httpx.get(f"{api.http.base_url}/health/live", timeout=10).status_code)

    prober = threading.Thread(target=probe)
    prober.start()
    fast_run = api.wait_run(api.start_run(fast_flow["id"]), timeout=60)
    prober.join()
    assert fast_run["status"] == "succeeded" and live == [200]
    steps = {node: api.steps(api.wait_run(rid, timeout=60))[node] for node, rid in heavy.items()}
    for node, step in steps.items():
        assert step["status"] == "failed", step
        assert (
            fast_run["finished_at"] < step["finished_at"]
        ), f"the fast run, started while {node} was running, finished first"
    t_error, rx_error = steps["t"]["error"]["message"], steps["rx"]["error"]["message"]
    assert "timed out after 3s" in t_error or "timeout" in t_error, t_error
    assert "longer than 3s" in rx_error, rx_error  # the author's 6 s, capped by the server
    print(f"\nheavy template: {t_error} | regex: {rx_error}")

    # the attack as filed: nested range(10000) loops on a node with timeout_s 1
    nested = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    attack = api.create_flow(
        {
            "nodes": [
                {"id": "in", "type": "input", "data": {"params": {}}},
                {
                    "id": "n",
                    "type": "template",
                    "data": {"params": {"template": nested}, "timeout_s": 1},
                },
                {"id": "out", "type": "output", "data": {"params": {}}},
            ],
            "edges": [{"source": "in", "target": "n"}, {"source": "n", "target": "out"}],
        }
    )
    run = api.wait_run(api.start_run(attack["id"]))
    step = api.steps(run)["n"]
    assert run["status"] == "failed" and step["attempt"] == 1, run
    assert "loop iterations" in step["error"]["message"], step["error"]

    big = api.create_flow(linear_flow(("b", "template", {"template": "{{ ('x'*10**8)|length }}"})))
    run = api.wait_run(api.start_run(big["id"]))
    step = api.steps(run)["b"]
    assert run["status"] == "failed" and step["attempt"] == 1
    assert "over the limit of 1000000" in step["error"]["message"], step["error"]
