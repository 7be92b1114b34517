"""Cluster-wide provider limits on the real stack (API + orchestrator + two workers), against a local
OpenAI-compatible server that records when each call started and how many were in flight.

- Two users' batches share one provider (same base_url, the same key stored as each user's own
  secret): with max_concurrency 4 and RPM 600 the server never sees more than 4 calls at once nor
  600 in any minute, and both batches finish with every item right.
- An RPM of 5 is observed: 5 calls, then the other steps park (`waiting`, no lease) and no further
  call goes out until the admin lifts the limit; then they finish.
- A 429 with Retry-After parks the step (`waiting`, no worker lease), it finishes after, and the
  provider's effective concurrency comes down; a provider that caps concurrency (429 beyond 3) still
  gets every item through, adaptively, with no configuration.
- An agent's turn and embeddings requests take permits too (the agent parks on its 429).
- Attacks: a non-admin can neither list, read, create, change nor delete providers (403); an admin
  cannot name another user's secret as the key (422); the key is in no response and no log line;
  limits out of bounds answer 422 with the field path.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import make_user
from tests.integration.test_batches import results, upload, wait_batch
from tests.support.client import Api, linear_flow
from tests.support.durability import wait_for
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack


@pytest.fixture
def admin(running_stack: Stack, database_url: str) -> Api:
    return Api(running_stack.base_url, *make_user(database_url, "admin"))


def add_secret(api: Api, value: str) -> str:
    name = "K_" + uuid.uuid4().hex[:8]
    r = api.http.post("/api/v1/secrets", json={"name": name, "value": value})
    assert r.status_code == 201, r.text
    return name


def llm_flow(api: Api, base_url: str, secret: str) -> dict[str, Any]:
    params = {
        "model": "m",
        "base_url": base_url,
        "api_key": "{{ secrets." + secret + " }}",
        "prompt": "{{ inputs.name }}",
        "max_tokens": 20,
    }
    return api.create_flow(linear_flow(("llm", "llm_chat", params)))


def register(admin: Api, base_url: str, key: str, **limits: Any) -> dict[str, Any]:
    r = admin.http.post(
        "/api/v1/providers",
        json={"base_url": base_url, "api_key_secret": add_secret(admin, key), **limits},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def provider(admin: Api, provider_id: str) -> dict[str, Any]:
    r = admin.http.get(f"/api/v1/providers/{provider_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def llm_status(db: psycopg.Connection[Any], run_id: str, node_id: str = "llm") -> str | None:
    row = db.execute(
        "SELECT status FROM steps WHERE run_id = %s AND node_id = %s", (run_id, node_id)
    ).fetchone()
    return row[0] if row else None


def most_in_any_minute(starts: list[float]) -> int:
    starts = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while t - starts[lo] >= 60:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.timeout(180)
def test_two_users_batches_share_one_provider_within_its_limits(
    running_stack: Stack, admin: Api, database_url: str, server: FakeOpenAI
) -> None:
    key = "sk-shared-" + uuid.uuid4().hex
    base_url = server.base_url(first_delay=0.3)
    prov = register(admin, base_url, key, label="shared", max_concurrency=4, rpm=600)
    assert prov["key_fingerprint"] and len(prov["key_fingerprint"]) == 12
    assert key not in json.dumps(prov)
    users = [Api(running_stack.base_url, *make_user(database_url)) for _ in range(2)]
    names = {i: [f"u{i}-{n:02d}" for n in range(20)] for i in range(2)}
    batches = []
    for i, user in enumerate(users):
        flow = llm_flow(user, base_url, add_secret(user, key))
        body = json.dumps([{"name": n} for n in names[i]])
        r = upload(user, flow["id"], body, "application/json")
        assert r.status_code == 202, r.text
        batches.append(r.json()["id"])
    for i, user in enumerate(users):
        done = wait_batch(user, batches[i], timeout=150)
        assert done["status"] == "succeeded", done["counts"]
        rows = results(user, batches[i])
        assert [r["outputs"]["text"] for r in rows] == [f"echo: {n}" for n in names[i]]
    assert len(server.starts) == 40
    assert server.peak <= 4, f"the provider saw {server.peak} calls at once (limit 4)"
    assert most_in_any_minute(server.starts) <= 600
    after = provider(admin, prov["id"])
    assert after["requests_last_minute"] == 40 and after["tokens_last_minute"] > 0
    wait_for(lambda: provider(admin, prov["id"])["in_flight"] == 0, 10, "permits to return")


@pytest.mark.timeout(120)
def test_rpm_limit_parks_the_rest_until_the_admin_lifts_it(
    api: Api, admin: Api, db: psycopg.Connection[Any], server: FakeOpenAI
) -> None:
    key = "sk-rpm-" + uuid.uuid4().hex
    base_url = server.base_url()
    prov = register(admin, base_url, key, rpm=5)
    flow = llm_flow(api, base_url, add_secret(api, key))
    runs = [api.start_run(flow["id"], {"name": f"r{i}"}) for i in range(8)]
    wait_for(lambda: provider(admin, prov["id"])["parked"] == 3, 30, "3 steps parked")
    assert len(server.starts) == 5
    parked = db.execute(
        """SELECT status, lease_owner FROM steps
           WHERE run_id = ANY(%s::uuid[]) AND node_id = 'llm' AND status <> 'succeeded'""",
        (runs,),
    ).fetchall()
    assert parked == [("waiting", None)] * 3
    time.sleep(1.5)  # two orchestrator timer passes: nothing is woken while the minute is used up
    assert len(server.starts) == 5
    r = admin.http.patch(f"/api/v1/providers/{prov['id']}", json={"rpm": None})
    assert r.status_code == 200 and r.json()["rpm"] is None, r.text
    for i, rid in enumerate(runs):
        run = api.wait_run(rid, timeout=30)
        assert run["status"] == "succeeded" and run["outputs"]["text"] == f"echo: r{i}", (
            run,
            api.steps(run),
        )
    assert len(server.starts) == 8


@pytest.mark.timeout(120)
def test_429_parks_the_step_durably_and_lowers_effective_concurrency(
    api: Api, admin: Api, db: psycopg.Connection[Any], server: FakeOpenAI
) -> None:
    key = "sk-429-" + uuid.uuid4().hex
    base_url = server.base_url(rate_limit=1, retry_after=4)
    flow = llm_flow(api, base_url, add_secret(api, key))
    rid = api.start_run(flow["id"], {"name": "x"})
    wait_for(lambda: llm_status(db, rid) == "waiting", 30, "the step to park after its 429")
    # parked for the Retry-After, read from the park's own times (not from now(): a slow
    # machine may look more than 4 s after the park)
    row = db.execute(
        """SELECT s.lease_owner, k.reason, k.not_before - k.parked_at >= interval '3.5 s'
             FROM steps s JOIN provider_parked k ON k.step_id = s.id WHERE s.run_id = %s""",
        (rid,),
    ).fetchone()
    assert row == (None, "throttled", True)
    run = api.wait_run(rid, timeout=30)
    assert run["status"] == "succeeded" and run["outputs"]["text"] == "echo: x"
    assert server.calls[f"{rid}:llm:0"] == 2
    llm = api.steps(run)["llm"]
    assert llm["attempt"] == 2 and llm.get("error") is None
    (prov,) = [p for p in admin.http.get("/api/v1/providers").json() if p["base_url"] in base_url]
    assert prov["throttled_total"] == 1 and prov["last_throttled_at"]
    assert prov["effective_concurrency"] < 256 and prov["max_concurrency"] is None
    assert prov["learned_limit"] == 1  # it refused a call admitted with nothing else in flight


@pytest.mark.timeout(180)
def test_a_provider_that_caps_concurrency_gets_every_item_adaptively(
    api: Api, admin: Api, server: FakeOpenAI
) -> None:
    key = "sk-cap-" + uuid.uuid4().hex
    base_url = server.base_url(cap=3, first_delay=0.2, retry_after=0.5)
    flow = llm_flow(api, base_url, add_secret(api, key))
    names = [f"c{i:02d}" for i in range(24)]
    r = upload(api, flow["id"], json.dumps([{"name": n} for n in names]), "application/json")
    assert r.status_code == 202, r.text
    done = wait_batch(api, r.json()["id"], timeout=150)
    assert done["status"] == "succeeded", done["counts"]
    rows = results(api, done["id"])
    assert [row["error"] for row in rows if row["status"] != "succeeded"] == []
    assert [row["outputs"]["text"] for row in rows] == [f"echo: {n}" for n in names]
    (prov,) = [p for p in admin.http.get("/api/v1/providers").json() if p["base_url"] in base_url]
    assert prov["throttled_total"] >= 1
    assert prov["effective_concurrency"] < 16, prov  # 2 workers x 8 slots stormed it at first
    throttled = len(server.starts) - len(names)
    print(
        f"\ncap 3: {len(server.starts)} calls for {len(names)} items ({throttled} answered 429); "
        f"effective concurrency now {prov['effective_concurrency']}"
    )


def test_non_admins_cannot_touch_providers_and_the_key_never_shows(
    running_stack: Stack, api: Api, admin: Api, server: FakeOpenAI
) -> None:
    key = "sk-attack-" + uuid.uuid4().hex
    prov = register(admin, server.base_url(), key, max_concurrency=2)
    pid = prov["id"]
    for method, path, body in (
        ("GET", "/api/v1/providers", None),
        ("GET", f"/api/v1/providers/{pid}", None),
        ("POST", "/api/v1/providers", {"base_url": "http://127.0.0.1:1/v1"}),
        ("PATCH", f"/api/v1/providers/{pid}", {"max_concurrency": 1000}),
        ("DELETE", f"/api/v1/providers/{pid}", None),
    ):
        r = api.http.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    victim_secret = add_secret(api, "sk-victim-" + uuid.uuid4().hex)  # the editor's own secret
    r = admin.http.post(
        "/api/v1/providers",
        json={"base_url": server.base_url(x=1), "api_key_secret": victim_secret},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.api_key_secret", r.text
    r = admin.http.post("/api/v1/providers", json={"base_url": server.base_url(), "rpm": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.rpm", r.text
    r = admin.http.patch(f"/api/v1/providers/{pid}", json={"max_concurrency": 0})
    assert r.status_code == 422 and "max_concurrency" in r.json()["errors"][0]["path"], r.text
    r = admin.http.post("/api/v1/providers", json={"base_url": "ftp://x"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.base_url", r.text
    r = admin.http.post(
        "/api/v1/providers",
        json={"base_url": server.base_url(), "api_key_secret": add_secret(admin, key)},
    )
    assert r.status_code == 409, r.text
    # a call through it, so that workers log whatever they log about this provider
    flow = llm_flow(api, server.base_url(), add_secret(api, key))
    assert api.wait_run(api.start_run(flow["id"], {"name": "k"}))["status"] == "succeeded"
    seen = (
        admin.http.get("/api/v1/providers").text + admin.http.get(f"/api/v1/providers/{pid}").text
    )
    assert key not in seen and prov["key_fingerprint"] in seen
    r = admin.http.patch(
        f"/api/v1/providers/{pid}", json={"label": "team", "max_concurrency": None}
    )
    assert (
        r.status_code == 200 and r.json()["label"] == "team" and r.json()["max_concurrency"] is None
    )
    assert (
        r.json()["effective_concurrency"] == 32
    )  # back to slow start (PROVIDER_INITIAL_CONCURRENCY)
    for p in running_stack.procs:
        assert key not in p.log_path.read_text(errors="replace"), p.name
    assert admin.http.delete(f"/api/v1/providers/{pid}").status_code == 204
    assert admin.http.get(f"/api/v1/providers/{pid}").status_code == 404


@pytest.mark.timeout(120)
def test_agent_turns_and_embeddings_take_permits_too(
    api: Api, admin: Api, db: psycopg.Connection[Any], server: FakeOpenAI
) -> None:
    """Every OpenAI-compatible call counts against its provider, not only `llm_chat`'s: an agent's
    turn parks on a 429 like a chat call does, and embeddings requests are counted."""
    key = "sk-all-" + uuid.uuid4().hex
    base_url = server.base_url(rate_limit=1, retry_after=1)
    secret = "{{ secrets." + add_secret(api, key) + " }}"
    prov = register(admin, base_url, key, max_concurrency=2)
    agent = api.create_flow(
        linear_flow(
            ("a", "agent", {"model": "m", "base_url": base_url, "api_key": secret, "prompt": "hi"})
        )
    )
    rid = api.start_run(agent["id"], {})
    run = api.wait_run(rid, timeout=30)
    assert run["status"] == "succeeded", api.steps(run)
    assert api.steps(run)["a"]["attempt"] == 2
    # it parked on its 429 (read from the event log: a 1 s park is over before a poll may see it)
    moves = db.execute(
        """SELECT from_status, to_status, data->>'parked' FROM run_events
           WHERE run_id = %s AND kind = 'step' AND node_id = 'a' ORDER BY seq""",
        (rid,),
    ).fetchall()
    assert ("running", "waiting", "throttled") in moves, moves
    parked = moves.index(("running", "waiting", "throttled"))
    assert moves[parked + 1][:2] == ("waiting", "ready"), moves  # woken by the orchestrator
    params = {"provider": "openai", "base_url": base_url, "api_key": secret, "text": "a b"}
    emb = api.create_flow(linear_flow(("e", "embeddings", {"model": "e", **params})))
    run = api.wait_run(api.start_run(emb["id"], {}), timeout=30)
    assert run["status"] == "succeeded", api.steps(run)
    p = provider(admin, prov["id"])
    assert p["throttled_total"] == 1 and p["requests_last_minute"] == 3, p
