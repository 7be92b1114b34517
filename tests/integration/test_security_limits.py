"""Issue 10 items 1 and 7 replayed against a real API: request work that froze the event loop, and
input that crashed it.

- Item 1: the 20,000-edge flow is refused at once (limits on nodes, edges and bytes, each with its
  path); a big flow that is within (raised) limits validates off the event loop: a `/health/live`
  call never waits for a whole validation (the server logs how long the validation took). Eight
  concurrent bad logins: the figures are printed.
- Item 7: JSON nested 1,000 (and 100) deep in run inputs or flow params is 400 with the path, NUL in
  inputs, a flow name or a webhook text body is 422 with the path, and the API log gets no traceback.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, path_prefix: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    paths = [e["path"] for e in body.get("errors", [])]
    assert any(p.startswith(path_prefix) for p in paths), body
    return dict(body)


def two_nodes(edges: int) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "a", "type": "input", "data": {"params": {}}},
            {"id": "b", "type": "output", "data": {"params": {}}},
        ],
        "edges": [
            {
                "id": f"e{i}",
                "source": "a",
                "target": "b",
                "sourceHandle": "out",
                "targetHandle": "in",
            }
            for i in range(edges)
        ],
    }


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_json(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.fixture
def api_only(stack: Stack, database_url: str, request: pytest.FixtureRequest) -> tuple[Stack, Api]:
    env = getattr(request, "param", None)
    stack.start_api(extra_env=env)
    return stack, Api(stack.base_url, *make_user(database_url))


class HealthPoller:
    """Calls /health/live back to back in a thread; keeps (sent, answered) monotonic times."""

    def __init__(self, base_url: str) -> None:
        self.calls: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, args=(base_url,), daemon=True)

    def _poll(self, base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            while not self.stop.is_set():
                sent = time.monotonic()
                assert http.get("/health/live").status_code == 200
                self.calls.append((sent, time.monotonic()))
                time.sleep(0.005)

    def __enter__(self) -> HealthPoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def during(self, start: float, end: float) -> list[float]:
        """Latencies of the calls that overlapped [start, end]."""
        return [b - a for a, b in self.calls if b >= start and a <= end]


def test_the_20000_edge_flow_is_refused_at_once_with_the_path(api: Api) -> None:
    r = api.http.post("/api/v1/flows", json={"name": "big", "definition": two_nodes(20_000)})
    body = assert_problem(r, 422, "definition.edges")
    assert "at most 10000 edges" in body["detail"]
    many = {
        "nodes": [{"id": f"n{i}", "type": "noop", "data": {"params": {}}} for i in range(2001)],
        "edges": [],
    }
    r = api.http.post("/api/v1/flows", json={"name": "wide", "definition": many})
    assert_problem(r, 422, "definition.nodes")
    fat = linear_flow(("t", "template", {"template": "x" * (2 * 1024 * 1024)}))
    r = api.http.post("/api/v1/flows", json={"name": "fat", "definition": fat})
    assert_problem(r, 413, "body.definition")
    fid = api.create_flow(linear_flow(("t", "template", {"template": "x"})))["id"]
    r = api.http.put(f"/api/v1/flows/{fid}", json={"definition": two_nodes(20_000)})
    assert_problem(r, 422, "definition.edges")


@pytest.mark.parametrize(
    "api_only",
    [{"FLOW_MAX_EDGES": "1000000", "FLOW_MAX_BYTES": str(64 * 1024 * 1024)}],
    indirect=True,
)
def test_a_big_validation_runs_off_the_event_loop(api_only: tuple[Stack, Api]) -> None:
    stack, api = api_only
    body = {"name": "big", "definition": two_nodes(100_000)}  # ~8 MB: limits raised on purpose
    with HealthPoller(stack.base_url) as poller:
        time.sleep(0.2)
        started = time.monotonic()
        r = api.http.post("/api/v1/flows", json=body, timeout=300)
        ended = time.monotonic()
        time.sleep(0.1)
    assert r.status_code == 201, r.text
    log = stack.procs[0].log_path.read_text()
    found = re.findall(r"validated a flow definition of \d+ bytes in ([0-9.]+) s", log)
    assert found, "the API logs how long a slow validation took"
    validation_s = float(found[-1])
    latencies = poller.during(started, ended)
    print(
        f"\nPOST of 100,000 edges: {ended - started:.2f} s, validation {validation_s:.2f} s; "
        f"/health/live during it: {len(latencies)} calls, max {max(latencies) * 1000:.0f} ms"
    )
    assert len(latencies) >= 2
    # On the loop, the health call sent as validation began would wait for all of it.
    assert max(latencies) < validation_s, (latencies, validation_s)


def test_concurrent_bad_logins_leave_health_answering(api_only: tuple[Stack, Api]) -> None:
    stack, _ = api_only
    answers: list[int] = []

    def bad_login(i: int) -> None:
        body = {"email": f"nobody{i}@example.com", "password": "wrong-password"}
        r = httpx.post(f"{stack.base_url}/api/auth/login", json=body, timeout=120)
        answers.append(r.status_code)

    with HealthPoller(stack.base_url) as poller:
        time.sleep(0.2)
        started = time.monotonic()
        threads = [threading.Thread(target=bad_login, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ended = time.monotonic()
    assert answers == [401] * 8
    latencies = poller.during(started, ended)
    print(
        f"\n8 concurrent bad logins: {ended - started:.2f} s; /health/live during them: "
        f"{len(latencies)} calls, max {max(latencies) * 1000:.0f} ms"
    )


def test_deep_json_and_nul_are_4xx_with_the_path_and_no_traceback(
    api_only: tuple[Stack, Api],
) -> None:
    stack, api = api_only
    log_path: Path = stack.procs[0].log_path
    lines_before = len(log_path.read_text().splitlines())
    fid = api.create_flow(linear_flow(("t", "template", {"template": "x"})))["id"]
    runs = f"/api/v1/flows/{fid}/runs"
    json_ct = {"content-type": "application/json"}
    sent = 0

    def post(url: str, content: str | bytes, headers: dict[str, str] | None = None) -> Any:
        nonlocal sent
        sent += 1
        return api.http.post(url, content=content, headers=headers or json_ct)

    # 1,000 deep: beyond what any JSON decoder here can even recurse into
    assert_problem(post(runs, '{"inputs": ' + deep_json(1000) + "}"), 400, "body")
    r = post(runs, '{"inputs": ' + deep_json(100) + "}")
    assert_problem(r, 400, "body.inputs.a.a.a")
    sync = f"/api/v1/run/{fid}"
    assert_problem(post(sync, '{"input_value": ' + deep_json(1000) + "}"), 400, "body")
    params = linear_flow(("t", "template", {"template": "x", "extra": deep(100)}))
    sent += 1
    r = api.http.post("/api/v1/flows", json={"name": "deep", "definition": params})
    assert_problem(r, 400, "body.definition.nodes[1].data.params.extra.a")

    assert_problem(post(runs, '{"inputs": {"x": "a\\u0000b"}}'), 422, "body.inputs.x")
    assert_problem(
        post("/api/v1/flows", b'{"name": "a\\u0000", "definition": {}}'), 422, "body.name"
    )
    key = api.http.post("/api/v1/api-keys", json={"name": "hook"}).json()["key"]
    sent += 1
    hook = f"{stack.base_url}/api/v1/webhook/{fid}"
    for content_type in ("text/plain", "application/octet-stream"):
        sent += 1
        r = httpx.post(
            hook,
            content=b"hello\x00there",
            headers={"x-api-key": key, "content-type": content_type},
        )
        assert_problem(r, 422, "body")
    sent += 1
    r = httpx.post(hook, content=b'{"t": "\\u0000"}', headers={"x-api-key": key, **json_ct})
    assert_problem(r, 422, "body.t")
    sent += 1  # no Content-Type at all: the webhook reads JSON, so the limits apply too
    r = httpx.post(hook, content=b'{"t": ["\\u0000"]}', headers={"x-api-key": key})
    assert_problem(r, 422, "body.t[0]")
    sent += 1
    r = httpx.post(hook, content=deep_json(2000), headers={"x-api-key": key, **json_ct})
    assert_problem(r, 400, "body")
    # nothing was stored, and the API still works
    assert api.http.get(f"/api/v1/runs?flow_id={fid}").json()["items"] == []
    assert api.http.get("/health/live").status_code == 200

    new_lines = log_path.read_text().splitlines()[lines_before:]
    assert not [line for line in new_lines if "Traceback" in line or "RecursionError" in line]
    assert len(new_lines) <= sent + 6, "\n".join(new_lines)  # one access-log line each
