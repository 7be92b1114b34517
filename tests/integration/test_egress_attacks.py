"""Issue 9 item 3, replayed against the running stack (HTTP_ALLOWED_HOSTS=127.0.0.1,localhost).

An "allowed" server on 127.0.0.1 answers every request with a 307 to a loopback service on 127.0.0.2,
which the stack does NOT allow and which answers with a recognisable secret. Through llm_chat (the
openai SDK follows redirects itself), embeddings, the vector store, http_request with redirects on, and
document_loader, the service must get no request at all, the step must fail at once (no retry) with
a refusal, and the secret must appear nowhere in the run, its steps or its event log. Also: the
response size cap (HTTP_MAX_RESPONSE_BYTES, 10 MB by default) stops an oversized body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.client import Api, linear_flow
from tests.support.tiny_http import TinyServer

SECRET = "LOOPBACK-SECRET"


@pytest.fixture(scope="module")
def bounce() -> Iterator[tuple[TinyServer, TinyServer]]:
    """(redirector on allowed 127.0.0.1, secret service on not-allowed 127.0.0.2)."""
    secret = TinyServer("127.0.0.2")
    redirector = TinyServer("127.0.0.1", redirect_to=secret.url("").rstrip("/"))
    yield redirector, secret
    redirector.close()
    secret.close()


def _everything(db: psycopg.Connection[Any], api: Api, run: dict[str, Any]) -> str:
    events = db.execute("SELECT data FROM run_events WHERE run_id = %s", (run["id"],)).fetchall()
    return json.dumps(api.run(run["id"]), default=str) + json.dumps(events, default=str)


def _attack(
    api: Api, db: psycopg.Connection[Any], node_type: str, params: dict[str, Any]
) -> dict[str, Any]:
    retry = {"n": {"retry": {"max_attempts": 3, "initial_interval": 0.1}}}
    flow = api.create_flow(linear_flow(("n", node_type, params), retry=retry))
    run = api.wait_run(api.start_run(flow["id"], {"q": "hello"}))
    assert run["status"] == "failed", run
    assert "refused" in run["error"]["message"] and "127.0.0.2" in run["error"]["message"]
    assert api.steps(run)["n"]["attempt"] == 1  # a refusal is not retried
    assert SECRET not in _everything(db, api, run)
    return run


@pytest.mark.parametrize(
    ("node_type", "params"),
    [
        ("llm_chat", {"model": "m", "prompt": "{{ inputs.q }}", "retries": 2}),
        ("embeddings", {"provider": "openai", "text": "{{ inputs.q }}"}),
        ("vector_store_upsert", {"provider": "openai", "collection": "c", "documents": '["a"]'}),
        (
            "agent",
            {"model": "m", "prompt": "{{ inputs.q }}", "tools": [{"name": "t", "type": "noop"}]},
        ),
    ],
)
def test_sdk_redirect_to_a_refused_loopback_service_is_not_followed(
    api: Api,
    db: psycopg.Connection[Any],
    bounce: tuple[TinyServer, TinyServer],
    node_type: str,
    params: dict[str, Any],
) -> None:
    redirector, secret = bounce
    before = redirector.hits
    _attack(api, db, node_type, {**params, "base_url": redirector.url("/v1")})
    assert redirector.hits > before  # the allowed server was reached, and bounced us
    assert secret.hits == 0


def test_http_request_and_document_loader_redirects_are_checked_per_hop(
    api: Api, db: psycopg.Connection[Any], bounce: tuple[TinyServer, TinyServer]
) -> None:
    redirector, secret = bounce
    _attack(api, db, "http_request", {"url": redirector.url("/x"), "follow_redirects": True})
    _attack(api, db, "document_loader", {"url": redirector.url("/doc.txt")})
    assert secret.hits == 0


def test_http_request_without_follow_redirects_returns_the_redirect_itself(
    api: Api, bounce: tuple[TinyServer, TinyServer]
) -> None:
    redirector, secret = bounce
    flow = api.create_flow(linear_flow(("n", "http_request", {"url": redirector.url("/x")})))
    run = api.wait_run(api.start_run(flow["id"]))
    assert run["status"] == "succeeded", run["error"]
    assert api.steps(run)["n"]["output"]["status"] == 307 and secret.hits == 0


def test_http_request_response_over_the_size_cap_fails_without_retry(api: Api) -> None:
    server = TinyServer("127.0.0.1")
    try:
        url = server.url("/big?n=11000000")  # 11 MB > HTTP_MAX_RESPONSE_BYTES (10 MB default)
        retry = {"n": {"retry": {"max_attempts": 3, "initial_interval": 0.1}}}
        flow = api.create_flow(linear_flow(("n", "http_request", {"url": url}), retry=retry))
        run = api.wait_run(api.start_run(flow["id"]))
    finally:
        server.close()
    assert run["status"] == "failed" and "larger than 10000000 bytes" in run["error"]["message"]
    assert api.steps(run)["n"]["attempt"] == 1
