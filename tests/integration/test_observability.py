"""Observability over a real stack in a private database: /metrics counts exactly what ran, the
token is enforced, a worker started alone serves its own /metrics, LOG_FORMAT=json lines carry the
step context, and a caller's traceparent reaches an http_request sink through API -> run row ->
queue -> worker, while the processes export (to a local OTLP receiver) a server span, the run span,
a span per step execution and a GenAI span per LLM call, all in the caller's trace.

The stack's database is this module's own (tests/support/private_stack.py), so the exact counts
of `flowstudio_runs_total` and `flowstudio_steps_total` are those of the runs started here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import Api, linear_flow
from tests.support.durability import wait_for
from tests.support.fake_openai import FakeOpenAI
from tests.support.otlp_collector import OtlpCollector
from tests.support.private_stack import (  # noqa: F401 -- fixtures
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.sink import Sink
from tests.support.stack import Stack, free_port

TOKEN = "metrics-token-for-tests-0123456789"


def scrape(base_url: str, token: str | None = None) -> dict[str, dict[tuple[Any, ...], float]]:
    """{sample name: {sorted label items: value}} from /metrics, parsed by prometheus-client."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[Any, ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    return float(metrics.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


def live_processes(base_url: str) -> tuple[float, float]:
    """(live workers, live orchestrators) as /metrics reports them now."""
    m = scrape(base_url)
    return value(m, "flowstudio_workers"), value(m, "flowstudio_processes", kind="orchestrator")


@pytest.fixture
def started(stack: Stack, credentials: tuple[str, str]) -> Iterator[tuple[Stack, Api]]:
    stack.start_api(extra_env={"METRICS_CACHE_SECONDS": "0.5"})
    stack.start_orchestrator()
    stack.start_worker(concurrency=4, extra_env={"LOG_FORMAT": "json"})
    yield stack, Api(stack.base_url, *credentials)


def test_metrics_count_exactly_the_runs_and_steps_that_ran(
    started: tuple[Stack, Api], fake: FakeOpenAI
) -> None:
    stack, api = started
    ok = api.create_flow(linear_flow(("t", "template", {"template": "hi"})), name="m ok")
    bad = api.create_flow(
        linear_flow(("boom", "fail", {"message": "kaput", "retryable": False})), name="m bad"
    )
    slow = api.create_flow(linear_flow(("wait", "delay", {"seconds": 60})), name="m slow")
    llm = api.create_flow(
        linear_flow(
            (
                "chat",
                "llm_chat",
                {
                    "model": "fake-obs",
                    "prompt": "hello there",
                    "base_url": fake.base_url(rate_limit=1, retry_after=0.1),
                },
            )
        ),
        name="m llm",
    )
    runs = [api.start_run(ok["id"]) for _ in range(3)]
    runs += [api.start_run(bad["id"]) for _ in range(2)]
    runs.append(api.start_run(llm["id"]))
    cancelled = api.start_run(slow["id"])
    # waiting = its delay step is parked, so its input step has succeeded; "running" alone can be
    # seen while the input step still runs, and a cancel then (right) leaves it unfinished
    api.wait_run(cancelled, statuses=("waiting",))
    assert api.http.post(f"/api/v1/runs/{cancelled}/cancel").status_code in (200, 202)
    finals = [api.wait_run(r)["status"] for r in [*runs, cancelled]]
    assert finals == ["succeeded"] * 3 + ["failed"] * 2 + ["succeeded", "cancelled"]

    expected = {"succeeded": 4.0, "failed": 2.0, "cancelled": 1.0}
    deadline = time.monotonic() + 30
    while True:  # the rollup trails commits by a couple of seconds
        m = scrape(stack.base_url)
        got = {s: value(m, "flowstudio_runs_total", status=s) for s in expected}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == expected
    assert value(m, "flowstudio_steps_total", node_type="template", status="succeeded") == 3
    assert value(m, "flowstudio_steps_total", node_type="fail", status="failed") == 2
    assert value(m, "flowstudio_steps_total", node_type="llm_chat", status="succeeded") == 1
    assert value(m, "flowstudio_steps_total", node_type="input", status="succeeded") == 7
    # 3 ok + 1 llm runs reached their output; the failed and cancelled ones did not
    assert value(m, "flowstudio_steps_total", node_type="output", status="succeeded") == 4
    assert value(m, "flowstudio_step_duration_seconds_count", node_type="template") == 3
    assert value(m, "flowstudio_step_duration_seconds_bucket", node_type="template", le="+Inf") == 3
    # live = a heartbeat within LEASE_SECONDS (3 s) and the orchestrator beats every 2 s: one late
    # beat on a loaded machine shows it stale for a moment, so the gauges are read until both show
    wait_for(lambda: live_processes(stack.base_url) == (1, 1), 15, "the live processes' gauges")
    for queue in ("ready", "outbox", "broker"):
        assert ("queue", queue) in {k for labels in m["flowstudio_queue_depth"] for k in labels}
    assert value(m, "flowstudio_runs_live", status="running") == 0
    assert "flowstudio_outbox_lag_seconds" in m and "flowstudio_timers_due" in m

    # LLM calls from the worker, persisted and scraped from the API: one 429, then one success
    provider = re.sub(r"^http://([^/]+)/.*$", r"\1", fake.base_url())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = scrape(stack.base_url)
        llm_ok = value(
            m, "flowstudio_llm_requests_total", provider=provider, model="fake-obs", outcome="ok"
        )
        if llm_ok:
            break
        time.sleep(0.5)
    labels = {"provider": provider, "model": "fake-obs"}
    assert value(m, "flowstudio_llm_requests_total", **labels, outcome="ok") == 1
    assert value(m, "flowstudio_llm_requests_total", **labels, outcome="rate_limited") == 1
    assert value(m, "flowstudio_llm_tokens_total", **labels, direction="input") > 0
    assert value(m, "flowstudio_llm_tokens_total", **labels, direction="output") > 0
    # the provider's limits (issue 12): its 429 parked the step once; nothing in flight now
    throttled = {dict(k)["host"]: v for k, v in m["flowstudio_provider_throttled_total"].items()}
    assert throttled[provider] == 1
    for family in ("in_flight", "effective_concurrency", "parked_steps"):
        assert f"flowstudio_provider_{family}" in m

    # HTTP requests by route template: no run id in any label
    routes = {dict(k).get("route") for k in m["flowstudio_http_requests_total"]}
    assert "/api/v1/runs/{run_id}" in routes, routes
    assert not any(cancelled in (r or "") for r in routes)

    api_log = stack.procs[0].log_path.read_text()
    assert "Traceback" not in api_log

    # LOG_FORMAT=json: every worker line is one JSON object; step lines carry the step context
    lines = [ln for ln in stack.procs[2].log_path.read_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]
    failed = [r for r in records if r["message"].startswith("step failed")]
    assert len(failed) == 2
    for rec in failed:
        assert rec["run_id"] in runs and rec["node_id"] == "boom" and rec["attempt"] == 1
        assert rec["worker"].startswith("worker:") and isinstance(rec["step_id"], int)
    assert any("llm fake-obs" in r["message"] and r.get("node_id") == "chat" for r in records)


def test_metrics_need_the_token_and_scrapers_share_one_collection(stack: Stack) -> None:
    """Also: the API's log is one JSON object per line with LOG_FORMAT=json."""
    api = stack.start_api(
        extra_env={"METRICS_TOKEN": TOKEN, "METRICS_CACHE_SECONDS": "600", "LOG_FORMAT": "json"}
    )
    url = f"{stack.base_url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"authorization": TOKEN}).status_code == 401  # no scheme
    assert httpx.get(url, headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
    r = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "flowstudio_runs_total" in r.text

    # ten concurrent scrapers within the cache interval: still one database query set
    with ThreadPoolExecutor(10) as pool:
        bodies = list(pool.map(lambda _: scrape(stack.base_url, TOKEN), range(10)))
    assert {value(b, "flowstudio_metrics_collections_total") for b in bodies} == {1.0}

    # the API's own log (uvicorn's access lines too) is JSON with LOG_FORMAT=json
    lines = [ln for ln in api.log_path.read_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]
    assert any("GET /metrics" in r["message"] for r in records)


def test_a_worker_started_alone_serves_its_own_metrics(stack: Stack) -> None:
    port = free_port()
    env = {"METRICS_PORT": str(port), "BACKEND_HOST": "127.0.0.1", "METRICS_TOKEN": TOKEN}
    worker = stack.start_worker(concurrency=1, extra_env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 30
    while True:
        try:
            r = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=2)
            break
        except httpx.HTTPError:
            assert worker.alive, worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
    assert r.status_code == 200
    families = {f.name for f in text_string_to_metric_families(r.text)}
    assert "flowstudio_process_db_pool_connections" in families
    assert httpx.get(url).status_code == 401
    assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404


def test_a_callers_trace_reaches_the_http_sink_with_a_span_per_step(
    stack: Stack, credentials: tuple[str, str], sink: Sink, fake: FakeOpenAI
) -> None:
    collector = OtlpCollector()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    try:
        stack.start_api(extra_env=otel)
        stack.start_orchestrator(extra_env=otel)
        stack.start_worker(concurrency=2, extra_env=otel)
        api = Api(stack.base_url, *credentials)
        flow = api.create_flow(
            linear_flow(
                ("call", "http_request", {"url": sink.url("/traced")}),
                (
                    "chat",
                    "llm_chat",
                    {"model": "fake-tr", "prompt": "hi", "base_url": fake.base_url()},
                ),
            )
        )
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        r = api.http.post(
            f"/api/v1/flows/{flow['id']}/runs",
            json={"inputs": {}},
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        assert r.status_code == 202, r.text
        assert api.wait_run(r.json()["id"])["status"] == "succeeded"

        # the step's traceparent went out with the HTTP call: same trace, the step's own span
        sent = [q["headers"] for q in sink.requests if q["path"] == "/traced"]
        assert len(sent) == 1
        parent = {k.lower(): v for k, v in sent[0].items()}.get("traceparent", "")
        assert parent.startswith(f"00-{trace_id}-"), sent[0]

        deadline = time.monotonic() + 20
        while True:  # each process exports in batches of its own: wait for the API's spans too
            spans = [sp for sp in collector.spans() if sp["trace_id"] == trace_id]
            names = {sp["name"] for sp in spans}
            # the last step with a span of its own: the output step commits with its success
            # (FOLD_STEPS: it executes nothing, README "Pass-through steps")
            worker = {"step http_request", "chat fake-tr", "step llm_chat"}
            server = any(n.startswith("POST /api/v1/flows/") for n in names)
            if worker | {"flowstudio.run"} <= names and server:
                break
            assert time.monotonic() < deadline, sorted(names)
            time.sleep(0.3)
        by_name = {sp["name"]: sp for sp in spans}
        server = next(sp for sp in spans if sp["name"].startswith("POST /api/v1/flows/"))
        assert server["parent_span_id"] == "00f067aa0ba902b7"
        assert server["service"] == "flowstudio-api"
        run_span = by_name["flowstudio.run"]
        assert run_span["parent_span_id"] == server["span_id"]
        call = by_name["step http_request"]
        assert call["service"] == "flowstudio-worker"
        assert call["parent_span_id"] == run_span["span_id"]
        assert call["attributes"]["flowstudio.node_id"] == "call"
        assert call["attributes"]["flowstudio.attempt"] == 1
        assert call["attributes"]["flowstudio.status"] == "succeeded"
        assert parent.split("-")[2] == call["span_id"]
        llm = by_name["chat fake-tr"]
        assert llm["parent_span_id"] == by_name["step llm_chat"]["span_id"]
        assert llm["attributes"]["gen_ai.request.model"] == "fake-tr"
        assert llm["attributes"]["gen_ai.usage.input_tokens"] > 0
        assert llm["attributes"]["gen_ai.usage.output_tokens"] > 0
    finally:
        collector.close()
