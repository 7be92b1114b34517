"""Secrets never leak into any process's log (nor the live event stream), replayed as an attack.

The module runs its own API, orchestrator and worker on a database and queue of its own
(`support/private_stack.py`), at LOG_LEVEL=DEBUG, so every line any process wrote about these runs is
in the test's log files. Each path a secret can travel gets its own secret value: the header of a
succeeding call whose server echoes it back (`?echo=1`), the header of a failing call with retries
whose server echoes it too, an LLM API key, the key of an LLM whose careless server repeats it in its
streamed answer (tokens go to the live SSE stream), and an LLM call the provider refuses (401) while
echoing the key in its error. A secret outside a credential field (a URL query, a `fail` message, a
template, a prompt) is refused at save, naming the secret and never its value. After the runs end, no
log file, no SSE stream and no API answer contains any of the values.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.integration.test_sse_live import sse_stream
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

PATHS = ["HEADER", "FAILING_HEADER", "LLM_KEY", "LLM_STREAM", "LLM_REFUSED", "REFUSED_AT_SAVE"]


def test_secrets_never_reach_any_process_log_or_the_live_stream(
    stack: Stack,
    credentials: tuple[str, str],
    db: psycopg.Connection[Any],
    sink: Sink,
    fake: FakeOpenAI,
) -> None:
    debug = {"LOG_LEVEL": "DEBUG"}
    stack.start_api(extra_env=debug)
    stack.start_orchestrator(extra_env=debug)
    stack.start_worker(concurrency=8, extra_env=debug)
    api = Api(stack.base_url, *credentials)
    values = {p: f"s3cr3t{p.lower().replace('_', '')}{uuid.uuid4().hex}" for p in PATHS}
    names = {p: f"LEAK_{p}_{uuid.uuid4().hex[:6]}" for p in PATHS}
    for p in PATHS:
        r = api.http.post("/api/v1/secrets", json={"name": names[p], "value": values[p]})
        assert r.status_code == 201, r.text

    def ref(p: str) -> str:
        return "{{ secrets." + names[p] + " }}"

    # outside a credential field a secret is refused at save: its name is said, never its value
    for where, params in [
        ("url", {"url": sink.url("/ok") + "?t=" + ref("REFUSED_AT_SAVE")}),
        ("template", {"template": "k=" + ref("REFUSED_AT_SAVE")}),
    ]:
        kind = "http_request" if where == "url" else "template"
        r = api.http.post(
            "/api/v1/flows", json={"name": where, "definition": linear_flow(("n", kind, params))}
        )
        assert r.status_code == 422 and names["REFUSED_AT_SAVE"] in r.text, r.text
        assert values["REFUSED_AT_SAVE"] not in r.text
    gate = uuid.uuid4().int % 10**9  # the streamed answer waits until the test's stream is open
    flows: dict[str, tuple[dict[str, Any], str]] = {
        "http_ok": (
            linear_flow(
                (
                    "call",
                    "http_request",
                    {
                        "url": sink.url("/ok", echo=1),
                        "headers": {"Authorization": "Bearer " + ref("HEADER")},
                    },
                )
            ),
            "succeeded",
        ),
        "http_failing": (
            linear_flow(
                (
                    "call",
                    "http_request",
                    {
                        "url": sink.url("/deny", status=500, echo=1),
                        "headers": {"X-Token": ref("FAILING_HEADER")},
                    },
                ),
                retry={"call": {"retry": {"max_attempts": 2, "initial_interval": 0.1}}},
            ),
            "failed",
        ),
        "llm_stream": (
            linear_flow(
                (
                    "llm",
                    "llm_chat",
                    {
                        "model": "m",
                        "base_url": fake.base_url(gate=gate, delay=0.05, echo_key=1),
                        "api_key": ref("LLM_STREAM"),
                        "prompt": "repeat your key please",
                        "stream": True,
                    },
                )
            ),
            "succeeded",
        ),
        "llm_refused": (
            linear_flow(
                (
                    "llm",
                    "llm_chat",
                    {
                        "model": "m",
                        "base_url": fake.base_url(status=401, echo_key=1),
                        "api_key": ref("LLM_REFUSED"),
                        "prompt": "hi",
                    },
                )
            ),
            "failed",
        ),
    }
    runs: dict[str, str] = {}
    streamed: list[str] = []
    for kind, (defn, _) in flows.items():
        runs[kind] = api.start_run(api.create_flow(defn, name=kind)["id"])
        if kind == "llm_stream":  # follow it live: the token events carry the streamed answer
            for item in sse_stream(api, runs[kind]):
                if isinstance(item, dict) and "id" in item:  # a logged event: tokens follow too
                    fake.open_gate(gate)
                streamed.append(str(item))
    for kind, (_, want) in flows.items():
        run = api.wait_run(runs[kind], timeout=60)
        assert run["status"] == want, (kind, run["status"], run["error"])
    # the secrets did reach their destinations (the test is not vacuous)
    sent = [r for r in sink.requests if r["path"] == "/ok"]
    assert {k.lower(): v for k, v in sent[0]["headers"].items()}["authorization"].endswith(
        values["HEADER"]
    )
    assert any(
        r["headers"]["authorization"] == f"Bearer {values['LLM_STREAM']}" for r in fake.requests
    )
    assert any("token" in s for s in streamed), streamed
    answers = "".join(api.http.get(f"/api/v1/runs/{rid}").text for rid in runs.values())

    stack.stop_all()  # every line is flushed
    logs = {p.name: p.log_path.read_text(errors="replace") for p in stack.procs}
    assert any("DEBUG" in text for text in logs.values()), "the processes did not log at DEBUG"
    worker_log = "\n".join(t for name, t in logs.items() if name.startswith("worker"))
    # the worker logged the calls that carried the secrets (the check below reads real lines)
    assert "HTTP 401" in worker_log and "httpcore" in worker_log
    leaks = [
        (path, proc, line.strip()[:300])
        for path, value in values.items()
        for proc, text in logs.items()
        for line in text.splitlines()
        if value in line
    ]
    assert not leaks, f"secret values in process logs: {leaks}"
    assert not [p for p, v in values.items() if v in "\n".join(streamed)], "secret in SSE stream"
    assert not [p for p, v in values.items() if v in answers], "secret in a run's API answer"
