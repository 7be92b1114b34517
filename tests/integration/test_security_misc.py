"""Issue 10 item 8 replayed, the smaller holes, each against a real API:

- the share form answered differently for unknown and known emails (account enumeration);
- `/ops/stats` showed every process's hostname and pid to editors; `/openai/models` owners' user ids;
- credentialed CORS was open to :3005 in production (now CORS_ORIGINS, empty by default);
- no X-Frame-Options / CSP frame-ancestors / nosniff on UI and API responses;
- an Idempotency-Key reused on another flow returned the first flow's run (now 409);
- the .env.example SECRET_KEY placeholder and short keys were accepted (now exit code 2);
- a condition touching a sandboxed attribute crashed as "unexpected" and was retried.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.infra import ROOT
from tests.support.stack import Stack

CSP_UI_PARTS = ("script-src 'self'", "frame-ancestors 'none'", "object-src 'none'")


def flow_x() -> dict[str, Any]:
    return linear_flow(("t", "template", {"template": "x"}))


def test_the_share_form_answers_alike_for_known_and_unknown_emails(
    api: Api, running_stack: Stack, database_url: str
) -> None:
    fid = api.create_flow(flow_x())["id"]
    known, _ = make_user(database_url)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    url = f"/api/v1/flows/{fid}/shares"
    answers = [api.http.post(url, json={"email": e, "permission": "run"}) for e in (known, unknown)]
    assert [r.status_code for r in answers] == [202, 202]
    bodies = [{k: v for k, v in r.json().items() if k != "email"} for r in answers]
    assert bodies[0] == bodies[1], bodies
    assert set(answers[0].headers) == set(answers[1].headers)
    # the known user really got the share; the unknown email created nothing
    assert [s["email"] for s in api.http.get(url).json()] == [known]


def test_ops_processes_and_model_owners_are_not_shown_to_others(
    api: Api, running_stack: Stack, database_url: str
) -> None:
    stats = api.http.get("/api/v1/ops/stats")
    assert stats.status_code == 200 and stats.json()["processes"]
    for p in stats.json()["processes"]:
        assert p["hostname"] == "" and p["pid"] == 0 and ":" not in p["id"], p
    admin = Api(running_stack.base_url, *make_user(database_url, "admin"))
    processes = admin.http.get("/api/v1/ops/stats").json()["processes"]
    assert processes and all(p["hostname"] and p["pid"] for p in processes)

    owner = Api(running_stack.base_url, *make_user(database_url))
    fid = owner.create_flow(flow_x())["id"]
    me = api.http.get("/api/auth/me").json()
    owner_id = owner.http.get("/api/auth/me").json()["id"]
    share = {"email": me["email"], "permission": "run"}
    assert owner.http.post(f"/api/v1/flows/{fid}/shares", json=share).status_code == 202
    models = api.http.get("/api/v1/openai/models").json()["data"]
    shared = [m for m in models if m["id"] == fid]
    assert shared and shared[0]["owned_by"] == "shared"
    assert owner_id not in str(models) and me["id"] not in str(models)


def test_cors_is_closed_by_default_and_a_setting_opens_it(
    running_stack: Stack, stack: Stack
) -> None:
    dev = "http://localhost:3005"
    preflight = {"origin": dev, "access-control-request-method": "POST"}
    r = httpx.options(f"{running_stack.base_url}/api/v1/flows", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{running_stack.base_url}/health/live", headers={"origin": dev})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-credentials" not in r.headers

    stack.start_api(extra_env={"CORS_ORIGINS": dev})
    r = httpx.options(f"{stack.base_url}/api/v1/flows", headers=preflight)
    assert r.headers.get("access-control-allow-origin") == dev
    assert r.headers.get("access-control-allow-credentials") == "true"
    evil = {**preflight, "origin": "http://evil.example"}
    r = httpx.options(f"{stack.base_url}/api/v1/flows", headers=evil)
    assert r.headers.get("access-control-allow-origin") != "http://evil.example"


def test_security_headers_on_api_and_ui_responses(stack: Stack, tmp_path: Path) -> None:
    ui = tmp_path / "dist"
    ui.mkdir()
    (ui / "index.html").write_text("<!doctype html><html><body>designer</body></html>")
    stack.start_api(extra_env={"UI_DIST": str(ui)})
    for path in ("/", "/index.html", "/health/live", "/api/v1/flows"):
        r = httpx.get(f"{stack.base_url}{path}")
        assert r.headers.get("x-content-type-options") == "nosniff", (path, r.headers)
        assert r.headers.get("x-frame-options") == "DENY", path
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), path
    page = httpx.get(f"{stack.base_url}/")
    assert page.status_code == 200 and "designer" in page.text
    csp = page.headers["content-security-policy"]
    assert all(part in csp for part in CSP_UI_PARTS), csp
    api_csp = httpx.get(f"{stack.base_url}/health/live").headers["content-security-policy"]
    assert api_csp.startswith("default-src 'none'")


def test_an_idempotency_key_reused_on_another_flow_is_409(api: Api) -> None:
    first = api.create_flow(flow_x())["id"]
    second = api.create_flow(flow_x())["id"]
    key = f"k-{uuid.uuid4().hex}"
    run = api.start_run(first, key=key)
    r = api.http.post(
        f"/api/v1/flows/{second}/runs", json={"inputs": {}}, headers={"Idempotency-Key": key}
    )
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["path"] == "header.Idempotency-Key"
    assert api.start_run(first, key=key) == run, "the same flow still gets the same run"
    assert api.http.get(f"/api/v1/runs?flow_id={second}").json()["items"] == []


@pytest.mark.parametrize(
    "secret_key",
    ["change-me-to-a-long-random-string", "short", "x" * 31],
)
def test_placeholder_or_short_secret_key_refuses_to_start(
    base_env: dict[str, str], secret_key: str
) -> None:
    for command in (["api", "--port", "1"], ["worker"], ["orchestrator"]):
        proc = subprocess.run(
            [sys.executable, "-m", "flowstudio", *command],
            env={**base_env, "SECRET_KEY": secret_key},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2, (command, proc.stderr[-2000:])
        assert "SECRET_KEY" in proc.stderr


def test_the_env_example_placeholder_is_what_the_check_refuses() -> None:
    example = (ROOT / ".env.example").read_text()
    line = next(x for x in example.splitlines() if x.startswith("SECRET_KEY="))
    from flowstudio.settings import secret_key_problem

    assert secret_key_problem(line.split("=", 1)[1]) is not None
    assert secret_key_problem(os.environ.get("UNSET_FOR_TEST", "")) is None  # empty: secrets off
    assert secret_key_problem("test-secret-key-not-for-production") is None


def test_a_condition_touching_a_sandboxed_attribute_fails_once_not_retried(api: Api) -> None:
    defn = linear_flow(
        ("c", "condition", {"expression": "inputs.__class__"}),
        retry={"c": {"retry": {"max_attempts": 3, "initial_interval": 0.1}}},
    )
    defn["edges"][1]["sourceHandle"] = "true"
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"x": 1}))
    assert run["status"] == "failed", run
    step = api.steps(run)["c"]
    assert step["status"] == "failed" and step["attempt"] == 1, step
    assert "unsafe" in str(step["error"]), step["error"]
    assert "unexpected" not in str(step["error"]).lower()
