"""Property-based fuzzing of the whole HTTP API from its own OpenAPI spec (schemathesis, bounded):
no generated request may produce a 5xx. Runs the real `schemathesis` CLI against the real app.

Excluded: routes that stream or wait for a run by design (SSE, sync runs, OpenAI-compatible
completions), the login/logout pair (failed logins would rate-limit the loopback address for the rest
of the suite; logout would revoke the fuzzer's own token) and bulk uploads (covered by their own
tests, including malformed input). A second, targeted test sends every operation (those included)
JSON nested 1,000 and 100 deep and U+0000 in bodies, keys and query parameters: 4xx, never 5xx."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

EXCLUDE = r"(/events|/api/v1/run/|/openai/|/api/auth/log(in|out)|/batches$|/webhook/)"


@pytest.fixture
def api(running_stack: Stack, database_url: str) -> Api:
    """A user of the fuzzer's own: what it triggers (logout-all, session deletes, password
    changes) must not end the sessions of the user the other tests share."""
    return Api(running_stack.base_url, *make_user(database_url))


def test_fuzzed_requests_never_get_a_server_error(
    api: Api, running_stack: Stack, tmp_path: Path
) -> None:
    api.create_flow(linear_flow(("t", "template", {"template": "fuzz"})))  # something to find
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(st),
        "run",
        f"{running_stack.base_url}/schema/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        os.environ.get("FUZZ_EXAMPLES", "15"),
        "--header",
        f"Authorization: Bearer {api.token}",
        "--exclude-path-regex",
        EXCLUDE,
        "--request-timeout",
        "20",
        "--seed",
        "20261125",
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    (tmp_path.parent / "schemathesis.out").write_text(result.stdout)
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]


DEEP = '{"a":' * 1000 + "1" + "}" * 1000
NUL = "a\u0000b"


def _bodies(schema: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Deep and NUL-bearing bodies for one operation: the whole body, then each property."""
    ref = schema.get("$ref", "")
    if ref:
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    bodies = [DEEP, json.dumps([NUL]), json.dumps({NUL: 1})]
    for name in schema.get("properties", {}):
        bodies.append(json.dumps({name: NUL}))
        bodies.append(json.dumps({name: {"x": [NUL]}}))
        bodies.append('{"' + name + '": ' + DEEP + "}")
        bodies.append('{"' + name + '": ' + '{"a":' * 100 + "1" + "}" * 100 + "}")
    return bodies


def test_deep_and_nul_input_on_every_route_is_4xx_never_5xx(api: Api, running_stack: Stack) -> None:
    """Every operation of the spec (the streaming and webhook routes included) gets bodies nested
    1,000 and 100 deep and bodies with U+0000 in values and keys, and NUL in each query parameter.
    """
    flow = api.create_flow(linear_flow(("t", "template", {"template": "fuzz"})))
    run_id = api.start_run(flow["id"])
    ids = {"flow_id": flow["id"], "run_id": run_id, "flow_ref": flow["id"], "version": "1"}
    spec = api.http.get("/schema/openapi.json").json()
    failures: list[str] = []
    tried = 0
    for path, operations in spec["paths"].items():
        if path in ("/api/auth/logout", "/api/auth/logout-all"):
            continue  # would revoke the token this test uses
        for method, op in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)
            content = op.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            requests: list[tuple[str, dict[str, Any]]] = []
            if method in ("post", "put", "patch") or content:
                for body in _bodies(schema, spec):
                    headers = {"content-type": "application/json"}
                    requests.append((url, {"content": body, "headers": headers}))
                requests.append((url, {"content": NUL, "headers": {"content-type": "text/plain"}}))
            for param in op.get("parameters", []):
                if param.get("in") == "query":
                    requests.append((url, {"params": {param["name"]: NUL}}))
            for target, kwargs in requests:
                tried += 1
                r = api.http.request(method.upper(), target, timeout=30, **kwargs)
                if r.status_code >= 500:
                    failures.append(f"{method.upper()} {target} {kwargs} -> {r.status_code}")
    assert tried > 100
    assert not failures, "\n".join(failures[:20])
