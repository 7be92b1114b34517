"""API key scopes and expiry, replaying issue 10 item 5 over real HTTP.

The attack: a key made for a webhook caller minted new keys, overwrote a secret and created a flow
with a code node. Now a `run:flow:<id>` key runs that one flow (and reads its runs) and is refused
(403) on keys, secrets, flows and shares; a `run` key runs all the user's flows but manages nothing;
`full` (the default, so `POST {"name"}` keeps working) is everything the user can. An expired key is
401 like a revoked one.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

ECHO = linear_flow()
CODE_FLOW = linear_flow(("c", "code", {"code": "result = 1"}))


@pytest.fixture
def owner(running_stack: Stack, database_url: str) -> Api:
    return Api(running_stack.base_url, *make_user(database_url))


def make_key(api: Api, **body: Any) -> dict[str, Any]:
    r = api.http.post("/api/v1/api-keys", json={"name": "k", **body})
    assert r.status_code == 201, r.text
    return r.json()


def as_key(api: Api, key: str) -> httpx.Client:
    return httpx.Client(base_url=str(api.http.base_url), headers={"x-api-key": key}, timeout=30)


def assert_status(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)


def test_flow_scoped_key_runs_its_flow_and_manages_nothing(owner: Api) -> None:
    mine = owner.create_flow(ECHO)["id"]
    other = owner.create_flow(ECHO)["id"]
    created = make_key(owner, scope="run:flow", flow_id=mine)
    assert created["scope"] == f"run:flow:{mine}"
    key = as_key(owner, created["key"])

    # the replayed attack: mint a key, overwrite a secret, create a flow with a code node
    assert_status(key.post("/api/v1/api-keys", json={"name": "escalate"}), 403)
    assert_status(key.get("/api/v1/api-keys"), 403)
    assert_status(key.post("/api/v1/secrets", json={"name": "OPENAI", "value": "x"}), 403)
    assert_status(key.put("/api/v1/secrets/OPENAI", json={"value": "x"}), 403)
    assert_status(key.post("/api/v1/flows", json={"name": "evil", "definition": CODE_FLOW}), 403)
    assert_status(key.put(f"/api/v1/flows/{mine}", json={"definition": CODE_FLOW}), 403)
    assert_status(key.delete(f"/api/v1/flows/{mine}"), 403)
    assert_status(key.post(f"/api/v1/flows/{mine}/shares", json={"email": "a@b.c"}), 403)
    assert_status(key.post(f"/api/v1/flows/{mine}/webhook-secret"), 403)
    assert_status(key.post("/api/auth/logout-all"), 403)
    assert owner.http.get(f"/api/v1/flows/{mine}").json()["version"] == 1

    # what it is for: run its flow, read that run, call its webhook
    r = key.post(f"/api/v1/flows/{mine}/runs", json={"inputs": {"x": 1}})
    assert_status(r, 202)
    run = owner.wait_run(r.json()["id"])
    assert run["status"] == "succeeded"
    assert_status(key.get(f"/api/v1/runs/{run['id']}"), 200)
    assert_status(key.post(f"/api/v1/webhook/{mine}", json={"y": 2}), 202)
    me = key.get("/api/auth/me").json()
    assert me["scope"] == f"run:flow:{mine}" and "keys:write" not in me["permissions"]

    # nothing else of the owner's is visible
    assert_status(key.post(f"/api/v1/flows/{other}/runs", json={"inputs": {}}), 404)
    assert_status(key.post(f"/api/v1/webhook/{other}", json={}), 404)
    other_run = owner.start_run(other)
    assert_status(key.get(f"/api/v1/runs/{other_run}"), 404)
    assert_status(key.get("/api/v1/runs"), 403)


def test_run_scoped_key_runs_every_own_flow_but_cannot_build_any(owner: Api) -> None:
    a = owner.create_flow(ECHO)["id"]
    b = owner.create_flow(ECHO)["id"]
    key = as_key(owner, make_key(owner, scope="run")["key"])
    for flow_id in (a, b):
        assert_status(key.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": {}}), 202)
    assert_status(key.get("/api/v1/runs"), 200)
    assert_status(key.post("/api/v1/flows", json={"name": "evil", "definition": CODE_FLOW}), 403)
    assert_status(key.post("/api/v1/api-keys", json={"name": "escalate", "scope": "full"}), 403)
    assert_status(key.post("/api/v1/secrets", json={"name": "S", "value": "x"}), 403)
    assert_status(key.delete(f"/api/v1/flows/{a}"), 403)


def test_full_scope_stays_the_default_and_can_manage(owner: Api) -> None:
    created = make_key(owner)
    assert created["scope"] == "full"
    key = as_key(owner, created["key"])
    assert_status(key.post("/api/v1/api-keys", json={"name": "child"}), 201)
    assert_status(key.post("/api/v1/flows", json={"name": "ok", "definition": ECHO}), 201)


def test_expired_key_is_refused_with_401(owner: Api, db: psycopg.Connection[Any]) -> None:
    created = make_key(owner, expires_in_days=1)
    key = as_key(owner, created["key"])
    assert_status(key.get("/api/auth/me"), 200)
    db.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = %s",
        (created["id"],),
    )
    r = key.get("/api/auth/me")
    assert_status(r, 401)
    assert r.headers["content-type"].startswith("application/problem+json")
    listed = {k["id"]: k for k in owner.http.get("/api/v1/api-keys").json()}
    assert listed[created["id"]]["expired"] is True


def test_key_creation_refuses_bad_scopes_with_field_paths(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    stranger = Api(running_stack.base_url, *make_user(database_url))
    theirs = stranger.create_flow(ECHO)["id"]
    for body in (
        {"scope": "admin"},
        {"scope": "run:flow"},
        {"scope": "run", "flow_id": theirs},
        {"scope": "run:flow:not-a-uuid"},
    ):
        r = owner.http.post("/api/v1/api-keys", json={"name": "k", **body})
        assert_status(r, 422)
        assert "body.scope" in [e["path"] for e in r.json()["errors"]], r.text
    r = owner.http.post("/api/v1/api-keys", json={"name": "k", "expires_in_days": 0})
    assert_status(r, 422)
    r = owner.http.post(
        "/api/v1/api-keys", json={"name": "k", "scope": "run:flow", "flow_id": theirs}
    )
    assert_status(r, 404)
    r = owner.http.post("/api/v1/api-keys", json={"name": "k", "scope": f"run:flow:{uuid.uuid4()}"})
    assert_status(r, 404)


def test_an_admins_run_key_does_not_carry_admin_powers(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    admin = Api(running_stack.base_url, *make_user(database_url, role="admin"))
    someone_elses_run = owner.start_run(owner.create_flow(ECHO)["id"])
    assert_status(admin.http.get(f"/api/v1/runs/{someone_elses_run}"), 200)
    key = as_key(admin, make_key(admin, scope="run")["key"])
    assert_status(key.get(f"/api/v1/runs/{someone_elses_run}"), 404)
    assert "users:admin" not in key.get("/api/auth/me").json()["permissions"]
