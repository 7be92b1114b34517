"""Observability units without a stack: span shapes with the SDK's in-memory exporter, GenAI
attributes and LLM counters of `call_with_retries`, the JSON log formatter with the step context,
and the rollup histogram's percentile."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flowstudio.nodes.llm_client import call_with_retries
from flowstudio.observability import counters, tracing
from flowstudio.observability.logs import ContextFilter, JsonFormatter, log_context
from flowstudio.store.metrics_rollup import BOUNDS, percentile


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)


def step(run_id: str, **kw: Any) -> SimpleNamespace:
    base = {"step_id": 7, "node_id": "call", "node_type": "http_request", "attempt": 2}
    return SimpleNamespace(run_id=run_id, item_index=0, **{**base, **kw})


def test_step_span_continues_the_run_trace_and_carries_the_step(
    spans: InMemorySpanExporter,
) -> None:
    run_id = str(uuid.uuid4())
    parent = tracing.new_run_traceparent()
    assert parent is not None and parent.startswith("00-")
    with tracing.step_span(step(run_id), parent) as span:
        headers = tracing.inject_headers({})
        tracing.end_step_span(span, "failed", "HTTP 500 from upstream")
    run_span, step_span = spans.get_finished_spans()
    assert run_span.name == "flowstudio.run"
    assert step_span.name == "step http_request"
    assert step_span.context.trace_id == run_span.context.trace_id
    assert step_span.parent is not None and step_span.parent.span_id == run_span.context.span_id
    attrs = dict(step_span.attributes or {})
    assert attrs["flowstudio.attempt"] == 2 and attrs["flowstudio.node_type"] == "http_request"
    assert attrs["flowstudio.node_id"] == "call" and attrs["flowstudio.status"] == "failed"
    assert step_span.status.status_code == StatusCode.ERROR
    # outbound HTTP inside the step carries the step's own span
    assert headers["traceparent"].startswith(
        f"00-{step_span.context.trace_id:032x}-{step_span.context.span_id:016x}-"
    )


def test_a_run_without_stored_context_is_still_one_trace(spans: InMemorySpanExporter) -> None:
    run_id = str(uuid.uuid4())
    for node in ("a", "b"):
        with tracing.step_span(step(run_id, node_id=node), None):
            pass
    trace_ids = {s.context.trace_id for s in spans.get_finished_spans()}
    assert trace_ids == {uuid.UUID(run_id).int}


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat"))


def test_llm_call_is_a_genai_span_and_counts_tries_and_tokens(
    spans: InMemorySpanExporter,
) -> None:
    tries = {"n": 0}

    async def call() -> dict[str, Any]:
        tries["n"] += 1
        if tries["n"] == 1:
            raise openai.RateLimitError("slow down", response=_response(429), body=None)
        return {
            "text": "hi",
            "model": "m-1-2025",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        }

    before = counters.COUNTERS.totals()
    base_url = "http://127.0.0.1:8765/v1"

    async def main() -> dict[str, Any]:
        return await call_with_retries(
            call, retries=2, max_wait_s=0.01, what="llm m-1", model="m-1", base_url=base_url
        )

    anyio.run(main)
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert span.name == "chat m-1" and span.kind == SpanKind.CLIENT
    assert attrs["gen_ai.request.model"] == "m-1" and attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.usage.input_tokens"] == 11 and attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.response.model"] == "m-1-2025"
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == 8765
    after = counters.COUNTERS.totals()

    def delta(family: str, **labels: str) -> float:
        key = (family, json.dumps(labels, sort_keys=True, separators=(",", ":")))
        return after.get(key, 0.0) - before.get(key, 0.0)

    llm = {"provider": "127.0.0.1:8765", "model": "m-1"}
    assert delta(counters.LLM_REQUESTS, **llm, outcome="rate_limited") == 1
    assert delta(counters.LLM_REQUESTS, **llm, outcome="ok") == 1
    assert delta(counters.LLM_TOKENS, **llm, direction="input") == 11
    assert delta(counters.LLM_TOKENS, **llm, direction="output") == 5


def test_tracing_off_means_no_spans_and_no_headers() -> None:
    assert not tracing.enabled()
    assert tracing.new_run_traceparent() is None
    assert tracing.inject_headers({}) == {}
    with tracing.step_span(step(str(uuid.uuid4())), None) as span:
        assert span is None


def test_json_log_lines_carry_the_step_context() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.obs.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with log_context(run_id="r-1", step_id=3, node_id="n", attempt=1, worker="w"):
        logger.info("inside %s", "the step")
    logger.info("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["message"] == "inside the step" and inside["run_id"] == "r-1"
    assert inside["step_id"] == 3 and inside["attempt"] == 1 and inside["worker"] == "w"
    assert "run_id" not in outside and outside["level"] == "INFO"


def test_histogram_percentile_interpolates_inside_the_bucket() -> None:
    i = BOUNDS.index(1.0)  # bucket (0.5, 1.0]
    assert percentile({i: 10}, 0.5) == pytest.approx(0.75)
    assert percentile({}, 0.95) == 0.0
    assert percentile({-1: 5}, 0.5) == 0.0  # never started: not a duration
    assert percentile({len(BOUNDS): 3}, 0.5) == BOUNDS[-1]


def test_ops_snapshot_cache_computes_once_for_concurrent_viewers() -> None:
    from flowstudio.api.ops import SnapshotCache

    cache = SnapshotCache(ttl=60)
    calls = {"n": 0}

    async def compute() -> dict[str, Any]:
        calls["n"] += 1
        await anyio.sleep(0.05)  # viewers arriving meanwhile wait for this one
        return {"n": calls["n"]}

    async def main() -> list[Any]:
        results: list[Any] = []

        async def viewer(key: Any) -> None:
            results.append((key, await cache.get(key, compute)))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(viewer, ("all", 60, 60))
            tg.start_soon(viewer, ("owner-1", 60, 60))
        return results

    results = anyio.run(main)
    assert calls["n"] == 2  # one per (scope, window), not one per viewer
    assert len({v["n"] for k, v in results if k[0] == "all"}) == 1
