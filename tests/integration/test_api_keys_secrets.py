"""API keys, secrets (at rest and inside runs) and the login rate limit, over real HTTP and PostgreSQL.

Keys: shown once, stored as SHA-256, usable as `x-api-key`, refused once revoked, invisible to other
users. Secrets: write-only values, AES-GCM ciphertext at rest, per-user names, 503 without SECRET_KEY;
`{{ secrets.NAME }}` reaches the external call but never the run detail, step payloads or event log;
a missing secret fails the step at once, naming it. (Login backoff: test_login_backoff.py; key scopes
and expiry: test_key_scopes.py.)
"""

from __future__ import annotations

import hashlib
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from flowstudio.auth.secrets import SecretBox, SecretDecryptError
from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.infra import private_database
from tests.support.sink import Sink
from tests.support.stack import Stack

PROBLEM = "application/problem+json"


@pytest.fixture
def other(running_stack: Stack, database_url: str) -> Api:
    return Api(running_stack.base_url, *make_user(database_url))


def assert_problem(r: httpx.Response, status: int, path: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status
    if path is not None:
        assert path in [e["path"] for e in body.get("errors", [])], body
    return body


def unique_name(prefix: str = "S") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- API keys


def test_api_key_is_shown_once_stored_hashed_and_authenticates(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    r = api.http.post("/api/v1/api-keys", json={"name": "ci"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "key", "name", "prefix", "scope", "created_at", "expires_at"}
    assert created["scope"] == "full" and created["expires_at"] is not None
    key = created["key"]
    assert key.startswith("fsk_") and created["prefix"] == key[:12] and created["name"] == "ci"

    (stored,) = db.execute(
        "SELECT key_hash FROM api_keys WHERE id = %s", (created["id"],)
    ).fetchone()
    assert bytes(stored) == hashlib.sha256(key.encode()).digest()
    (row_text,) = db.execute(
        "SELECT k::text FROM api_keys k WHERE id = %s", (created["id"],)
    ).fetchone()
    assert key not in row_text

    me = httpx.get(f"{api.http.base_url}/api/auth/me", headers={"x-api-key": key})
    assert me.status_code == 200
    assert me.json()["id"] == api.http.get("/api/auth/me").json()["id"]

    listed = api.http.get("/api/v1/api-keys")
    assert listed.status_code == 200
    assert key not in listed.text
    mine = next(k for k in listed.json() if k["id"] == created["id"])
    assert set(mine) >= {"id", "name", "prefix", "created_at", "last_used_at", "revoked"}
    assert "key" not in mine and mine["revoked"] is False and mine["last_used_at"] is not None


def test_revoked_api_key_is_refused_with_401(api: Api) -> None:
    created = api.http.post("/api/v1/api-keys", json={"name": "short-lived"}).json()
    headers = {"x-api-key": created["key"]}
    base = str(api.http.base_url)
    assert httpx.get(f"{base}/api/v1/flows", headers=headers).status_code == 200

    assert api.http.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204
    assert_problem(httpx.get(f"{base}/api/v1/flows", headers=headers), 401)
    assert_problem(httpx.get(f"{base}/api/auth/me", headers=headers), 401)
    listed = {k["id"]: k for k in api.http.get("/api/v1/api-keys").json()}
    assert listed[created["id"]]["revoked"] is True
    assert api.http.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204  # idempotent


def test_api_key_bad_input_is_422_with_field_path_never_500(api: Api) -> None:
    assert_problem(api.http.post("/api/v1/api-keys", json={}), 422, "body.name")
    assert_problem(api.http.post("/api/v1/api-keys", json={"name": 5}), 422, "body.name")
    assert_problem(api.http.post("/api/v1/api-keys", json={"name": ""}), 422, "body.name")
    assert_problem(api.http.post("/api/v1/api-keys", json={"name": "   "}), 422, "body.name")
    assert_problem(api.http.post("/api/v1/api-keys", json={"name": "x" * 201}), 422, "body.name")
    bad_json = api.http.post(
        "/api/v1/api-keys", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert api.http.delete("/api/v1/api-keys/not-a-uuid").status_code == 404
    assert_problem(api.http.delete(f"/api/v1/api-keys/{uuid.uuid4()}"), 404)
    assert_problem(httpx.get(f"{api.http.base_url}/api/v1/api-keys"), 401)
    assert_problem(
        httpx.get(f"{api.http.base_url}/api/v1/api-keys", headers={"x-api-key": "fsk_bogus"}), 401
    )


def test_api_keys_are_isolated_between_users(api: Api, other: Api) -> None:
    created = api.http.post("/api/v1/api-keys", json={"name": "mine"}).json()
    assert created["id"] not in [k["id"] for k in other.http.get("/api/v1/api-keys").json()]
    assert_problem(other.http.delete(f"/api/v1/api-keys/{created['id']}"), 404)
    base = str(api.http.base_url)
    assert (
        httpx.get(f"{base}/api/auth/me", headers={"x-api-key": created["key"]}).json()["id"]
        == api.http.get("/api/auth/me").json()["id"]
    )


# ---------------------------------------------------------------- secrets API


def test_secret_crud_never_returns_the_value(api: Api) -> None:
    name, value = unique_name(), "v-" + uuid.uuid4().hex
    r = api.http.post("/api/v1/secrets", json={"name": name, "value": value})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"name", "created_at", "updated_at"} and value not in r.text

    assert_problem(api.http.post("/api/v1/secrets", json={"name": name, "value": "x"}), 409)
    listed = api.http.get("/api/v1/secrets")
    assert listed.status_code == 200 and value not in listed.text
    entry = next(s for s in listed.json() if s["name"] == name)
    assert set(entry) == {"name", "created_at", "updated_at"}

    time.sleep(0.01)
    new_value = "w-" + uuid.uuid4().hex
    put = api.http.put(f"/api/v1/secrets/{name}", json={"value": new_value})
    assert put.status_code == 200 and new_value not in put.text
    assert put.json()["updated_at"] > put.json()["created_at"]
    assert_problem(api.http.put(f"/api/v1/secrets/{unique_name()}", json={"value": "x"}), 404)

    assert api.http.delete(f"/api/v1/secrets/{name}").status_code == 204
    assert_problem(api.http.delete(f"/api/v1/secrets/{name}"), 404)
    assert name not in [s["name"] for s in api.http.get("/api/v1/secrets").json()]


@pytest.mark.parametrize(
    "name", ["1abc", "a-b", "a b", "", "x" * 65, "ümlaut", "a\n", "a.b", "secrets{{x}}"]
)
def test_secret_name_rules_are_enforced_with_field_paths(api: Api, name: str) -> None:
    assert_problem(
        api.http.post("/api/v1/secrets", json={"name": name, "value": "v"}), 422, "body.name"
    )


def test_secret_bad_input_is_422_never_500(api: Api) -> None:
    ok = unique_name("_ok")
    assert api.http.post("/api/v1/secrets", json={"name": ok, "value": "v"}).status_code == 201
    assert_problem(
        api.http.post("/api/v1/secrets", json={"name": unique_name()}), 422, "body.value"
    )
    assert_problem(
        api.http.post("/api/v1/secrets", json={"name": unique_name(), "value": ""}),
        422,
        "body.value",
    )
    assert_problem(
        api.http.post("/api/v1/secrets", json={"name": unique_name(), "value": 12}),
        422,
        "body.value",
    )
    assert_problem(
        api.http.post("/api/v1/secrets", json={"name": unique_name(), "value": "x" * 65537}),
        422,
        "body.value",
    )
    assert_problem(api.http.put("/api/v1/secrets/bad-name", json={"value": "v"}), 422, "path.name")
    assert_problem(api.http.put("/api/v1/secrets/a%0A", json={"value": "v"}), 422, "path.name")
    assert_problem(api.http.delete("/api/v1/secrets/9lives"), 422, "path.name")
    assert_problem(api.http.put(f"/api/v1/secrets/{ok}", json={}), 422, "body.value")
    assert_problem(httpx.get(f"{api.http.base_url}/api/v1/secrets"), 401)


def test_secret_is_encrypted_at_rest_and_bound_to_its_owner_and_name(
    api: Api, db: psycopg.Connection[Any], base_env: dict[str, str]
) -> None:
    a, b, value = unique_name(), unique_name(), "plain-" + uuid.uuid4().hex
    for name in (a, b):
        r = api.http.post("/api/v1/secrets", json={"name": name, "value": value})
        assert r.status_code == 201, r.text
    rows = {
        r[0]: r
        for r in db.execute(
            "SELECT name, ciphertext, nonce, owner_id, s::text FROM secrets s WHERE name IN (%s, %s)",
            (a, b),
        ).fetchall()
    }
    for _, ciphertext, nonce, _, as_text in rows.values():
        assert value.encode() not in bytes(ciphertext) and value not in as_text
        assert len(bytes(nonce)) == 12
    assert bytes(rows[a][1]) != bytes(rows[b][1])  # fresh nonce per encryption
    box = SecretBox.from_secret_key(base_env["SECRET_KEY"])
    owner = str(rows[a][3])
    assert box.decrypt(owner, a, bytes(rows[a][1]), bytes(rows[a][2])) == value
    with pytest.raises(SecretDecryptError):  # a ciphertext copied to another name does not open
        box.decrypt(owner, b, bytes(rows[a][1]), bytes(rows[a][2]))
    with pytest.raises(SecretDecryptError):
        SecretBox.from_secret_key("another-key").decrypt(
            owner, a, bytes(rows[a][1]), bytes(rows[a][2])
        )


def test_secrets_are_isolated_between_users(api: Api, other: Api) -> None:
    name = unique_name()
    assert api.http.post("/api/v1/secrets", json={"name": name, "value": "mine"}).status_code == 201
    assert name not in [s["name"] for s in other.http.get("/api/v1/secrets").json()]
    assert_problem(other.http.put(f"/api/v1/secrets/{name}", json={"value": "x"}), 404)
    assert_problem(other.http.delete(f"/api/v1/secrets/{name}"), 404)
    # names are per user: the other user may use the same name for their own secret
    assert (
        other.http.post("/api/v1/secrets", json={"name": name, "value": "theirs"}).status_code
        == 201
    )
    assert name in [s["name"] for s in api.http.get("/api/v1/secrets").json()]


def test_without_secret_key_one_is_generated_owner_only_and_shared_by_processes(
    stack: Stack, tmp_path: Path, sink: Sink
) -> None:
    # its own database and queue: the session's workers (with the test SECRET_KEY) must not take
    # these steps
    with private_database() as url:
        home = tmp_path / "home"
        env = {
            "SECRET_KEY": "",
            "FLOWSTUDIO_HOME": str(home),
            "DATABASE_URL": url,
            "QUEUE_PREFIX": f"fsgen_{uuid.uuid4().hex[:8]}",
        }
        stack.start_api(extra_env=env)
        stack.start_orchestrator(extra_env=env)
        stack.start_worker(extra_env=env)
        client = Api(stack.base_url, *make_user(url))
        _generated_key_scenario(client, home, sink)
        stack.stop_all()


def _generated_key_scenario(client: Api, home: Path, sink: Sink) -> None:
    name = f"GEN_{uuid.uuid4().hex[:6].upper()}"
    assert (
        client.http.post("/api/v1/secrets", json={"name": name, "value": "v-gen"}).status_code
        == 201
    )
    key = home / "secret_key"
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 48
    # the worker decrypts what the API encrypted: both read the same generated key
    auth = {"type": "bearer", "token": "{{ secrets." + name + " }}"}
    flow = client.create_flow(linear_flow(("h", "http_request", {"url": sink.url(), "auth": auth})))
    run = client.wait_run(client.start_run(flow["id"]))
    assert run["status"] == "succeeded", run


# ---------------------------------------------------------------- secrets inside runs


def _texts(db: psycopg.Connection[Any], run_id: str) -> list[str]:
    """Every stored row of a run as text: the run, its steps, their payloads, its event log."""
    queries = [
        "SELECT r::text FROM runs r WHERE id = %s",
        "SELECT s::text FROM steps s WHERE run_id = %s",
        "SELECT io::text FROM step_io io JOIN steps s ON s.id = io.step_id WHERE s.run_id = %s",
        "SELECT e::text FROM run_events e WHERE run_id = %s",
        "SELECT o::text FROM outbox o WHERE run_id = %s",
    ]
    return [row[0] for q in queries for row in db.execute(q, (run_id,)).fetchall()]


def test_secret_in_http_header_reaches_the_sink_but_is_stored_nowhere(
    api: Api, sink: Sink, db: psycopg.Connection[Any]
) -> None:
    name, value = unique_name("TOKEN"), "tok-" + uuid.uuid4().hex
    assert api.http.post("/api/v1/secrets", json={"name": name, "value": value}).status_code == 201
    defn = linear_flow(
        (
            "call",
            "http_request",
            {
                "method": "POST",
                "url": sink.url("/hook"),
                "headers": {"Authorization": "Bearer {{ secrets." + name + " }}"},
                "body": '{"q": "{{ inputs.q }}"}',
            },
        )
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"q": "hello"}))
    assert run["status"] == "succeeded", run
    sent = [r for r in sink.requests if r["path"] == "/hook"]
    assert len(sent) == 1
    auth = {k.lower(): v for k, v in sent[0]["headers"].items()}["authorization"]
    assert auth == f"Bearer {value}"

    detail = api.http.get(f"/api/v1/runs/{run['id']}")
    assert detail.status_code == 200 and value not in detail.text
    texts = _texts(db, run["id"])
    assert any("hello" in t for t in texts)  # the check below looks at real payloads
    assert not [t for t in texts if value in t]
    (events,) = db.execute(
        "SELECT count(*) FROM run_events WHERE run_id = %s AND data::text LIKE %s",
        (run["id"], f"%{value}%"),
    ).fetchone()
    assert events == 0


def test_secret_values_are_masked_in_outputs_and_errors(
    api: Api, sink: Sink, db: psycopg.Connection[Any]
) -> None:
    name, value = unique_name("KEY"), "key-" + uuid.uuid4().hex
    api.http.post("/api/v1/secrets", json={"name": name, "value": value})
    # a secret is opaque: outside a credential field it is refused at save, with the field path
    for ntype, params, field in (
        ("template", {"template": "k={{ secrets['" + name + "'] }}"}, "template"),
        ("http_request", {"url": sink.url("/deny", t="{{ secrets." + name + " }}")}, "url"),
    ):
        r = api.http.post(
            "/api/v1/flows", json={"name": "leak", "definition": linear_flow(("n", ntype, params))}
        )
        assert r.status_code == 422, r.text
        paths = [e["path"] for e in r.json()["errors"]]
        assert f"definition.nodes[1].data.params.{field}" in paths, paths
    # ... and transformed in a credential field it fails the step at run, before any call
    for header in (
        "{{ secrets." + name + " | reverse }}",
        "{% set x %}{{ secrets." + name + " }}{% endset %}{{ x | list | join(' ') }}",
    ):
        call = {"url": sink.url("/deny"), "headers": {"X-Leak": header}}
        run = api.wait_run(
            api.start_run(api.create_flow(linear_flow(("call", "http_request", call)))["id"])
        )
        step = api.steps(run)["call"]
        assert run["status"] == "failed" and step["attempt"] == 1, run
        assert "secret" in step["error"]["message"] and value not in step["error"]["message"]
    assert not [r for r in sink.requests if r["path"] == "/deny"]

    # masking is the last line: a server repeating the credential back is masked in the output
    # and in the error
    headers = {"Authorization": "Bearer {{ secrets." + name + " }}"}
    for status in (200, 400):
        call = {"url": sink.url("/echo", echo=1, status=status), "headers": headers}
        run = api.wait_run(
            api.start_run(api.create_flow(linear_flow(("call", "http_request", call)))["id"])
        )
        assert sink.requests[-1]["headers"]["Authorization"] == f"Bearer {value}"
        detail = api.http.get(f"/api/v1/runs/{run['id']}").text
        assert "Bearer ***" in detail and value not in detail
        assert not [t for t in _texts(db, run["id"]) if value in t]


def test_missing_secret_fails_the_step_at_once_naming_it(api: Api, other: Api) -> None:
    name = unique_name("MISSING")
    call = {"url": "http://127.0.0.1:9/never", "headers": {"K": "{{ secrets." + name + " }}"}}
    defn = linear_flow(
        ("t", "http_request", call),
        retry={"t": {"retry": {"max_attempts": 4, "initial_interval": 0.1}}},
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"]))
    step = api.steps(run)["t"]
    assert run["status"] == "failed" and step["status"] == "failed" and step["attempt"] == 1
    assert name in step["error"]["message"] and "not defined" in step["error"]["message"]

    # another user's secret of that name is not the run owner's: still missing
    other.http.post("/api/v1/secrets", json={"name": name, "value": "other-users-value"})
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"]))
    assert run["status"] == "failed" and name in api.steps(run)["t"]["error"]["message"]
