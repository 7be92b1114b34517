"""Secrets never leak into any process's log (nor the live event stream), replayed as an attack.

The module runs its own API, orchestrator and worker on a database and queue of its own
(`support/private_stack.py`), at LOG_LEVEL=DEBUG, so every line any process wrote about these runs is
in the test's log files. Each path a secret can travel gets its own secret value: an HTTP header and
a URL query of a succeeding call, the URL of a failing call with retries, a `fail` node's message, a
template that echoes the secret, an LLM API key, an LLM prompt whose streamed answer repeats the
secret (tokens go to the live SSE stream), and an LLM call the provider refuses (401). After the runs
end, no log file, no SSE stream and no API answer contains any of the values.
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

PATHS = [
    "HEADER",
    "QUERY",
    "FAILING_URL",
    "FAIL_MESSAGE",
    "ECHO",
    "LLM_KEY",
    "LLM_STREAM",
    "LLM_REFUSED",
]


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

    flows: dict[str, tuple[dict[str, Any], str]] = {
        "http_ok": (
            linear_flow(
                (
                    "call",
                    "http_request",
                    {
                        "url": sink.url("/ok") + "?t=" + ref("QUERY"),
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
                    {"url": sink.url("/deny", status=500) + "&t=" + ref("FAILING_URL")},
                ),
                retry={"call": {"retry": {"max_attempts": 2, "initial_interval": 0.1}}},
            ),
            "failed",
        ),
        "fail_node": (
            linear_flow(
                ("boom", "fail", {"message": "boom " + ref("FAIL_MESSAGE"), "retryable": False})
            ),
            "failed",
        ),
        "echo": (linear_flow(("t", "template", {"template": "k=" + ref("ECHO")})), "succeeded"),
        "llm_stream": (
            linear_flow(
                (
                    "llm",
                    "llm_chat",
                    {
                        "model": "m",
                        "base_url": fake.base_url(first_delay=0.5, delay=0.05),
                        "api_key": ref("LLM_KEY"),
                        "prompt": "repeat " + ref("LLM_STREAM") + " please",
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
                        "base_url": fake.base_url(status=401),
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
            streamed = [str(item) for item in sse_stream(api, runs[kind])]
    for kind, (_, want) in flows.items():
        run = api.wait_run(runs[kind], timeout=60)
        assert run["status"] == want, (kind, run["status"], run["error"])
    # the secrets did reach their destinations (the test is not vacuous)
    sent = [r for r in sink.requests if r["path"] == "/ok"]
    assert {k.lower(): v for k, v in sent[0]["headers"].items()}["authorization"].endswith(
        values["HEADER"]
    )
    assert any(
        r["headers"]["authorization"] == f"Bearer {values['LLM_KEY']}" for r in fake.requests
    )
    assert any("token" in s for s in streamed), streamed
    answers = "".join(api.http.get(f"/api/v1/runs/{rid}").text for rid in runs.values())

    stack.stop_all()  # every line is flushed
    logs = {p.name: p.log_path.read_text(errors="replace") for p in stack.procs}
    assert any("DEBUG" in text for text in logs.values()), "the processes did not log at DEBUG"
    worker_log = "\n".join(t for name, t in logs.items() if name.startswith("worker"))
    # the worker logged the calls that carried the secrets (the check below reads real lines)
    assert "status=401/v1/chat/completions" in worker_log and "httpcore" in worker_log
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
