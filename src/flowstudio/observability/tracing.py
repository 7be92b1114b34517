"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (the `otel` extra).

`init_tracing(settings, service)` is called by every process entry point: with no endpoint it does
nothing and no OpenTelemetry module is imported; with one it installs an SDK TracerProvider with a
batching OTLP/HTTP exporter (which reads the standard OTEL_* variables). Tests call
`use_provider(provider)` with an in-memory exporter instead. Every helper is a no-op when off.

How a run's trace is carried: the API's `tracing_middleware` continues the caller's `traceparent`
(a server span per request); `engine.checkpoint.start_run` stores `new_run_traceparent()` (a
"flowstudio.run" span, child of the request's span or a new root) in `runs.traceparent`; the
queue message stays a pointer; the worker reads the run's traceparent (`worker/worker.py`, only
when tracing is on) and wraps each step execution in `step_span` (attributes: attempt, node type,
node id, status); `inject_headers` puts the step's context into outbound HTTP (`http_request`).
A run without a stored traceparent (created while tracing was off, or forked) still gets one trace:
its trace id is the run id's 128 bits (`run_trace_context`). `llm_span` follows the GenAI semantic
conventions (gen_ai.operation.name, gen_ai.system / gen_ai.provider.name, gen_ai.request.model,
gen_ai.usage.input_tokens / output_tokens, gen_ai.response.finish_reasons).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeAlias

from flowstudio.settings import Settings

log = logging.getLogger(__name__)
# litestar.types' ASGI aliases, without importing litestar into workers
ASGIApp: TypeAlias = Any
Scope: TypeAlias = Any
Receive: TypeAlias = Any
Send: TypeAlias = Any
_state: dict[str, Any] = {"tracer": None}


def init_tracing(settings: Settings, service: str) -> None:
    if not settings.otel_endpoint:
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.error("OTEL_EXPORTER_OTLP_ENDPOINT is set but the `otel` extra is not installed")
        return
    name = os.environ.get("OTEL_SERVICE_NAME") or f"flowstudio-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    log.info("OpenTelemetry traces on (%s -> %s)", name, settings.otel_endpoint)


def use_provider(provider: Any) -> None:
    """Trace with this TracerProvider (None turns tracing off again)."""
    _state["tracer"] = provider.get_tracer("flowstudio") if provider is not None else None


def enabled() -> bool:
    return _state["tracer"] is not None


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add `traceparent` (and `tracestate`) of the current span to outbound HTTP headers."""
    if enabled():
        _propagator().inject(headers)
    return headers


def new_run_traceparent() -> str | None:
    """The traceparent stored on a new run: a short "flowstudio.run" span, child of the current
    context (the API request), whose children the steps will be."""
    tracer = _state["tracer"]
    if tracer is None:
        return None
    with tracer.start_as_current_span("flowstudio.run"):
        return inject_headers({}).get("traceparent")


def run_trace_context(run_id: Any, traceparent: str | None) -> Any:
    """The parent context of a run's step spans: its stored traceparent, else one derived from
    the run id (trace id = the UUID's 128 bits), so every run is one trace."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    if traceparent:
        return _propagator().extract({"traceparent": traceparent})
    value = uuid.UUID(str(run_id)).int
    span = SpanContext(
        trace_id=value,
        span_id=(value & 0xFFFFFFFFFFFFFFFF) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(span))


@contextmanager
def step_span(step: Any, traceparent: str | None) -> Iterator[Any]:
    """A span around one step execution; yields the span (None when tracing is off)."""
    tracer = _state["tracer"]
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        f"step {step.node_type}",
        context=run_trace_context(step.run_id, traceparent),
        attributes={
            "flowstudio.run_id": str(step.run_id),
            "flowstudio.step_id": int(step.step_id),
            "flowstudio.node_id": step.node_id,
            "flowstudio.node_type": step.node_type,
            "flowstudio.attempt": int(step.attempt),
            "flowstudio.item_index": int(step.item_index),
        },
    ) as span:
        yield span


def end_step_span(span: Any, status: str, error: str | None = None) -> None:
    if span is None:
        return
    span.set_attribute("flowstudio.status", status)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error[:500]))


def llm_span(model: str, provider: str, operation: str = "chat") -> Any:
    """A client span for one LLM call (GenAI semantic conventions); nullcontext when off."""
    tracer = _state["tracer"]
    if tracer is None:
        return nullcontext(None)
    from opentelemetry.trace import SpanKind

    host, _, port = provider.partition(":")
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "server.address": host,
    }
    if port.isdigit():
        attributes["server.port"] = int(port)
    return tracer.start_as_current_span(
        f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes
    )


def record_llm_result(span: Any, out: dict[str, Any]) -> None:
    if span is None:
        return
    usage = out.get("usage") or {}
    span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens", 0)))
    span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens", 0)))
    if out.get("model"):
        span.set_attribute("gen_ai.response.model", str(out["model"]))
    if out.get("finish_reason"):
        span.set_attribute("gen_ai.response.finish_reasons", [str(out["finish_reason"])])


def tracing_middleware(app: ASGIApp) -> ASGIApp:
    """A server span per API request, continuing the caller's `traceparent`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _state["tracer"]
        if tracer is None or scope["type"] != "http":
            await app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        route = str(scope.get("path_template") or scope["path"])  # type: ignore[call-overload]
        method = str(scope.get("method", "GET"))  # type: ignore[call-overload]
        with tracer.start_as_current_span(
            f"{method} {route}",
            context=_propagator().extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        ):
            await app(scope, receive, send)

    return middleware
