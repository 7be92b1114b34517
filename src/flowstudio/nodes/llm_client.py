"""OpenAI-compatible calls shared by the LLM and RAG families: a guarded client and bounded retries.

`open_client(ctx, base_url, api_key, timeout_s)` returns the process's shared `AsyncOpenAI` for that
provider (`CLIENTS`: one per egress, settings, base_url, key and timeout, LRU-bounded; callers never
close it: building one per call cost a worker more CPU than the call), whose `http_client` is a
guarded httpx client (`flowstudio.egress.client_for`: every connection the SDK opens, including each
redirect hop it follows, is resolved once, checked and pinned; bodies are size-capped), with the SDK's
own retries off (`max_retries=0`): `call_with_retries` below does them, under the same guard. The
client keeps no cookie (`egress.without_cookies`): it serves every team's steps. A refusal by the
guard (`EgressError`, raw or wrapped by the SDK) fails the step without retry and without any
response content.
`call_with_retries(fn, retries, max_wait_s)` runs one request: on 429/5xx, a timeout or a dropped
connection it waits (the server's Retry-After, bounded by `max_wait_s`, else exponential backoff) and
tries again inside the step; when the tries are spent it raises a retryable `NodeError`, so the engine's
durable step retry policy takes over. Other 4xx raise a non-retryable `NodeError`. With
`park_on_429` (provider limits on: `providers/permits.py`), a 429 is not retried here: it raises
`ProviderThrottled(retry_after)` and the step is parked durably for that long. Given `model`
and `base_url`, it also counts each try and the tokens (`observability.counters`, persisted for
GET /metrics) and wraps the call in a GenAI span (`observability.tracing.llm_span`). Error messages
name the status and the server's message, never the API key (the worker masks secrets anyway).
`warm_up()` (worker start) does the SDK's one-time work of a first request, off any step.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
import openai
from cachetools import LRUCache
from openai import AsyncOpenAI

from flowstudio.egress import (
    Egress,
    EgressError,
    client_for,
    find_egress_error,
    without_cookies,
)
from flowstudio.egress.transport import default_ssl_context
from flowstudio.nodes.http import check_url
from flowstudio.nodes.registry import NodeContext, NodeError
from flowstudio.observability import counters, tracing
from flowstudio.providers.permits import ProviderThrottled

log = logging.getLogger(__name__)
T = TypeVar("T")


CLIENTS_PER_PROCESS = 64  # distinct (egress, settings, base_url, key, timeout) clients kept


class _Clients:
    """A worker's OpenAI clients, one per (egress, settings, base_url, api key, timeout), LRU-bounded.

    An `AsyncOpenAI` is safe to share between concurrent calls and costs to build (its httpx client,
    and on its first request a thread hop to detect the platform), so a worker holding hundreds of
    LLM steps reuses one per provider instead of building one per call. The entry keeps the egress and
    settings objects alive, so their ids in the key cannot be reused while it exists. Without a
    process `Egress` (not a worker) each call gets a client of its own, as before."""

    def __init__(self, size: int) -> None:
        self.entries: LRUCache[tuple[Any, ...], tuple[AsyncOpenAI, Any, Any]] = LRUCache(size)

    def get(
        self, ctx: NodeContext, base_url: str | None, api_key: str, timeout_s: float
    ) -> AsyncOpenAI:
        if not isinstance(ctx.http, Egress):  # no process egress to share (not a worker): a
            return _new_client(ctx, base_url, api_key, timeout_s)  # client with its own pool
        key = (id(ctx.http), id(ctx.settings), base_url or None, api_key, timeout_s)
        entry = self.entries.get(key)
        if entry is None:
            client = _new_client(ctx, base_url, api_key, timeout_s)
            entry = self.entries[key] = (client, ctx.http, ctx.settings)
        return entry[0]


def _new_client(
    ctx: NodeContext, base_url: str | None, api_key: str, timeout_s: float
) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=base_url or None,
        api_key=api_key or "not-needed",  # local servers (vLLM, Ollama) accept any key
        max_retries=0,
        timeout=timeout_s,
        # the SDK's stubs name its own httpx build; the guarded client is a plain httpx.AsyncClient
        http_client=without_cookies(  # type: ignore[arg-type]
            client_for(ctx.http, ctx.settings, timeout=timeout_s, follow_redirects=True)
        ),
    )


CLIENTS = _Clients(CLIENTS_PER_PROCESS)


async def open_client(
    ctx: NodeContext, base_url: str | None, api_key: str, timeout_s: float
) -> AsyncOpenAI:
    """The process's shared client for this provider (callers do not close it)."""
    if base_url:
        check_url(base_url)
    return CLIENTS.get(ctx, base_url, api_key, timeout_s)


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds (delta or HTTP date), or the `retry-after-ms` some providers send."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def classify(exc: Exception) -> tuple[bool, float | None, str]:
    """(transient?, server-requested wait, message) for an error from the SDK."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = (exc.message if isinstance(exc.message, str) else str(exc.message))[:500]
        transient = status == 429 or status >= 500 or status == 408
        return transient, retry_after_seconds(exc.response.headers), f"HTTP {status}: {detail}"
    if isinstance(exc, openai.APITimeoutError):
        return True, None, "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        return True, None, f"connection error: {exc}"
    return False, None, f"{type(exc).__name__}: {exc}"


def outcome_of(exc: Exception | None) -> str:
    """The `outcome` label of flowstudio_llm_requests_total for one try."""
    if exc is None:
        return "ok"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return "rate_limited"
        return "server_error" if exc.status_code >= 500 else "client_error"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error"
    return "error"


def _tokens(result: Any) -> tuple[int, int]:
    usage = result.get("usage") if isinstance(result, dict) else getattr(result, "usage", None)
    if isinstance(usage, dict):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if usage is None:
        return 0, 0
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    return prompt, int(getattr(usage, "completion_tokens", 0) or 0)


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    retries: int,
    max_wait_s: float,
    what: str,
    model: str | None = None,
    base_url: str | None = None,
    operation: str = "chat",
    park_on_429: bool = False,
) -> T:
    """Run `fn` with up to `retries` extra tries on transient errors (see the module comment).
    With `model`, each try is counted (`flowstudio_llm_requests_total` by provider host, model,
    outcome), the tokens of the answer too, and the call is one GenAI span when tracing is on."""
    if model is None:
        return await _tries(fn, retries=retries, max_wait_s=max_wait_s, what=what, park=park_on_429)
    provider = counters.provider_of(base_url)

    async def counted() -> T:
        try:
            result = await fn()
        except Exception as exc:
            counters.llm_call(base_url, model, outcome_of(exc))
            raise
        counters.llm_call(base_url, model, "ok")
        return result

    with tracing.llm_span(model, provider, operation) as span:
        result = await _tries(
            counted, retries=retries, max_wait_s=max_wait_s, what=what, park=park_on_429
        )
        input_tokens, output_tokens = _tokens(result)
        counters.llm_tokens(base_url, model, input_tokens, output_tokens)
        if span is not None:
            tracing.record_llm_result(
                span,
                {
                    "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens},
                    **(
                        {k: result.get(k) for k in ("model", "finish_reason")}
                        if isinstance(result, dict)
                        else {}
                    ),
                },
            )
        return result


async def _tries(
    fn: Callable[[], Awaitable[T]], *, retries: int, max_wait_s: float, what: str, park: bool
) -> T:
    tries = 0
    while True:
        try:
            return await fn()
        except NodeError:
            raise
        except EgressError as exc:
            raise NodeError(f"{what}: {exc.reason}", retryable=exc.retryable) from exc
        except openai.OpenAIError as exc:
            refused = find_egress_error(exc)
            if refused is not None and not refused.retryable:
                raise NodeError(f"{what}: {refused.reason}", retryable=False) from exc
            transient, wait, message = classify(exc)
            if park and isinstance(exc, openai.APIStatusError) and exc.status_code == 429:
                log.info("%s: %s; the step parks (Retry-After %s)", what, message, wait)
                raise ProviderThrottled(wait) from exc  # parked durably, not retried in a slot
            if not transient:
                raise NodeError(f"{what}: {message}", retryable=False) from exc
            if tries >= retries:
                raise NodeError(f"{what}: {message} (after {tries + 1} tries)") from exc
            delay = min(max_wait_s, wait if wait is not None else 0.5 * 2**tries)
            log.info("%s: %s; retrying in %.2fs (try %d)", what, message, delay, tries + 2)
            tries += 1
            await anyio.sleep(delay)


def usage_dict(usage: Any) -> dict[str, int]:
    """Token usage from the SDK's model or a completion's JSON `usage` object (or None)."""
    if isinstance(usage, dict):
        get: Callable[[str], Any] = usage.get
    else:
        get = (lambda k: getattr(usage, k, 0)) if usage is not None else (lambda k: 0)
    prompt, completion = _count(get("prompt_tokens")), _count(get("completion_tokens"))
    total = _count(get("total_tokens")) or prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else 0


_WARM_COMPLETION = {
    "id": "warm",
    "object": "chat.completion",
    "created": 0,
    "model": "warm-up",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
_WARM_CHUNK = {**_WARM_COMPLETION, "object": "chat.completion.chunk"}
_WARM_CHUNK["choices"] = [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]


def _warm_answer(request: httpx.Request) -> httpx.Response:
    if b'"stream":true' in request.content.replace(b" ", b""):
        body = f"data: {json.dumps(_WARM_CHUNK)}\n\ndata: [DONE]\n\n".encode()
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=_WARM_COMPLETION)


async def warm_up() -> None:
    """One chat completion and one streamed one, built, sent (and the stream parsed) through an
    in-memory transport (no socket, nothing leaves the process), at worker start: the SDK does
    ~80 ms of one-time work on its first request (the response types' pydantic models, request
    building, platform detection; measured 83 ms against 2 ms for the next call), which would
    otherwise run inside the first LLM steps and stall every step the worker holds. The process's
    verifying SSL context (certifi's roots: ~33 ms, built on the first guarded client, even for an
    http:// provider) is built here too, for the same reason. Never fatal."""
    try:
        default_ssl_context()
        transport = httpx.MockTransport(_warm_answer)
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncOpenAI(
                base_url="http://warm-up.invalid/v1",
                api_key="warm-up",
                http_client=http,  # type: ignore[arg-type]  # (see _new_client)
            )
            messages: Any = [{"role": "user", "content": "warm up"}]
            body = {"model": "warm-up", "messages": messages}  # as `llm.complete_chat` sends
            await client.post("/chat/completions", body=body, cast_to=httpx.Response)
            stream = await client.chat.completions.create(
                model="warm-up", messages=messages, stream=True
            )
            async for _ in stream:
                pass
    except Exception as exc:  # a cold first call is slower, not wrong
        log.warning("OpenAI SDK warm-up failed: %r", exc)
