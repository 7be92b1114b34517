"""Signed webhooks (issue 10 item 5): once a flow's webhook has a signing secret, a call needs
`X-Flowstudio-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t." + body)>` with a fresh timestamp;
unsigned, stale (also an old timestamp replayed with its once-valid signature) and wrongly signed
calls are 401; a good signature is 202, and the same signed request again returns the same run
(the signature is the run's idempotency key). Verified the way a sender would sign, over real HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

HEADER = "X-Flowstudio-Signature"


@pytest.fixture
def owner(running_stack: Stack, database_url: str) -> Api:
    return Api(running_stack.base_url, *make_user(database_url))


def signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {HEADER: f"t={t},v1={mac}", "content-type": "application/json"}


def post(api: Api, key: str, flow_id: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{api.http.base_url}/api/v1/webhook/{flow_id}",
        content=body,
        headers={"x-api-key": key, "content-type": "application/json", **headers},
    )


def test_signed_webhook_refuses_unsigned_stale_bad_and_replayed_calls(owner: Api) -> None:
    flow_id = owner.create_flow(linear_flow())["id"]
    key = owner.http.post(
        "/api/v1/api-keys", json={"name": "hook", "scope": "run:flow", "flow_id": flow_id}
    ).json()["key"]
    body = json.dumps({"event": "paid", "n": 1}).encode()
    assert post(owner, key, flow_id, body, {}).status_code == 202  # unsigned webhook: as before

    r = owner.http.post(f"/api/v1/flows/{flow_id}/webhook-secret")
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert secret.startswith("whsec_") and r.json()["header"] == HEADER
    state = owner.http.get(f"/api/v1/flows/{flow_id}/webhook-secret").json()
    assert state["signed"] is True and "secret" not in state

    def refused(headers: dict[str, str], why: str) -> None:
        r = post(owner, key, flow_id, body, headers)
        assert r.status_code == 401, (why, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert secret not in r.text

    refused({}, "unsigned")
    refused(signed(secret, body, int(time.time()) - 400), "stale")
    refused(signed(secret, body, int(time.time()) + 400), "from the future")
    refused(signed("whsec_wrong", body), "wrong secret")
    refused(signed(secret, body + b" "), "body changed after signing")
    refused({HEADER: "t=abc,v1=zz"}, "malformed")

    good = signed(secret, body)
    r = post(owner, key, flow_id, body, good)
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    assert owner.wait_run(run_id)["outputs"] == {"event": "paid", "n": 1}
    # the same signed request again (a replay, or a retry) starts nothing new, whatever
    # Idempotency-Key it carries
    for extra in ({}, {"Idempotency-Key": "attacker-chosen"}):
        again = post(owner, key, flow_id, body, {**good, **extra})
        assert again.status_code == 202 and again.json()["run_id"] == run_id
    runs = owner.http.get("/api/v1/runs", params={"flow_id": flow_id, "limit": 100}).json()
    assert len(runs["items"]) == 2, "the unsigned call before the secret, and one signed run"

    # an old timestamp replayed with its (once valid) signature is stale
    refused(signed(secret, body, int(time.time()) - 301), "replayed old timestamp")

    # rotating invalidates the old secret; deleting makes the webhook unsigned again
    rotated = owner.http.post(f"/api/v1/flows/{flow_id}/webhook-secret").json()["secret"]
    refused(signed(secret, body), "rotated-away secret")
    assert post(owner, key, flow_id, body, signed(rotated, body)).status_code == 202
    assert owner.http.delete(f"/api/v1/flows/{flow_id}/webhook-secret").status_code == 204
    assert post(owner, key, flow_id, body, {}).status_code == 202


def test_only_the_flow_owner_manages_its_webhook_secret(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    flow_id = owner.create_flow(linear_flow())["id"]
    stranger = Api(running_stack.base_url, *make_user(database_url))
    assert stranger.http.post(f"/api/v1/flows/{flow_id}/webhook-secret").status_code == 404
    assert stranger.http.get(f"/api/v1/flows/{flow_id}/webhook-secret").status_code == 404
    state: dict[str, Any] = owner.http.get(f"/api/v1/flows/{flow_id}/webhook-secret").json()
    assert state == {"signed": False, "created_at": None}
