"""LLM nodes: `llm_chat` (an OpenAI-compatible chat call), `prompt` (a template -> chat messages) and
`chat_memory` (conversation history per session in PostgreSQL, scoped to the run owner).

`run_llm_chat` builds the messages (`build_messages`: system, history, prompt), the request
(`build_request`: sampling, tools, structured output, the step's Idempotency-Key) and sends it through
`llm_client.call_with_retries` either in one piece (`complete_chat`) or streamed (`_stream`), holding a
cluster-wide permit of its provider (`providers.permits.provider_call`: no capacity or a 429 parks
the step durably; the response's usage corrects the token estimate), where
`TokenEmitter` publishes the text as it arrives (`should_stream`: the node's flag, else when it feeds
an output node and its run is not a batch item) with `ctx.emit("fs_run_tokens", ...)` (pg_notify: live
only, never the event log; the step's secret values are masked with a hold-back buffer so one split
across tokens never leaves in clear: `secretmask.StreamMasker`). Output: {text, usage, model, finish_reason, tool_calls?, json?}.
`run_chat_memory` loads the last `limit` messages of a session or appends messages idempotently (keyed
by the step's idempotency key, so a re-run step does not store them twice; SQL in `store/memory.py`).
"""

from __future__ import annotations

import ast
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import httpx
import msgspec
from openai import AsyncOpenAI

from flowstudio.nodes.bounds import (
    CallTimeout,
    MaxTokens,
    MessageLimit,
    Retries,
    RetryWait,
    Temperature,
)
from flowstudio.nodes.llm_client import call_with_retries, open_client, usage_dict
from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeSpec, register
from flowstudio.providers.permits import estimate_tokens, provider_call
from flowstudio.secretmask import StreamMasker
from flowstudio.store import memory, runs

log = logging.getLogger(__name__)
ROLES = ("system", "user", "assistant", "tool")
TOKEN_CHANNEL = "fs_run_tokens"
SECRET_VALUES_KEY = "secrets:values"  # = worker.secret_values.VALUES_KEY


class LlmChatParams(msgspec.Struct, kw_only=True):
    model: str
    prompt: str = ""
    api_key: str = ""  # usually "{{ secrets.NAME }}"
    base_url: str | None = None  # an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1
    system: str | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    history: list[dict[str, Any]] | dict[str, Any] | str | None = None  # or "{{ mem | tojson }}"
    response_format: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | str | None = None  # implies response_format json_schema
    tools: list[dict[str, Any]] = msgspec.field(default_factory=list)  # OpenAI tool definitions
    tool_choice: str | dict[str, Any] | None = None
    # stream tokens into the run's live event stream; None (default): when the node feeds an
    # `output` node directly (the answer a chat client waits for) and the run is not a batch item;
    # True/False force it
    stream: bool | None = None
    timeout_s: CallTimeout = 120.0
    retries: Retries = 2  # in-step tries on 429/5xx before the engine's step retry policy applies
    max_retry_wait_s: RetryWait = 20.0  # upper bound on a server's Retry-After


class PromptParams(msgspec.Struct, kw_only=True):
    template: str
    system: str | None = None
    role: Literal["user", "system", "assistant"] = "user"


class ChatMemoryParams(msgspec.Struct, kw_only=True):
    session_id: str
    mode: Literal["load", "append"] = "load"
    limit: MessageLimit = (
        50  # how many of the latest messages to load (and to return after an append)
    )
    user: str | None = None  # append: the user's message
    assistant: str | None = None  # append: the assistant's answer
    messages: list[dict[str, Any]] | str | None = None  # append: any [{role, content}]


def parse_messages(value: Any, what: str = "history") -> list[dict[str, Any]]:
    """Messages from a list, a chat_memory output ({"messages": [...]}) or its JSON/repr string."""
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                value = ast.literal_eval(value)  # "{{ mem.messages }}" renders a Python repr
            except (ValueError, SyntaxError) as exc:
                raise NodeError(f"{what}: not a list of messages", retryable=False) from exc
    if isinstance(value, dict) and "messages" in value:
        value = value["messages"]
    if not isinstance(value, list):
        raise NodeError(f"{what}: expected a list of {{role, content}}", retryable=False)
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise NodeError(f"{what}[{i}]: needs a role in {ROLES}", retryable=False)
        msg = {"role": m["role"], "content": m.get("content")}
        for key in ("tool_calls", "tool_call_id", "name"):
            if m.get(key) is not None:
                msg[key] = m[key]
        out.append(msg)
    return out


def build_messages(params: LlmChatParams) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if params.system:
        messages.append({"role": "system", "content": params.system})
    messages += parse_messages(params.history)
    if params.prompt:
        messages.append({"role": "user", "content": params.prompt})
    if not messages:
        raise NodeError("nothing to send: prompt, system and history are empty", retryable=False)
    return messages


def _json_param(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise NodeError(f"{what} is not valid JSON: {exc}", retryable=False) from exc
    return value


def build_request(ctx: NodeContext, params: LlmChatParams) -> dict[str, Any]:
    req: dict[str, Any] = {
        "model": params.model,
        "messages": build_messages(params),
        "extra_headers": {"Idempotency-Key": ctx.idempotency_key},
    }
    if params.temperature is not None:
        req["temperature"] = params.temperature
    if params.max_tokens is not None:
        req["max_tokens"] = params.max_tokens
    if params.tools:
        req["tools"] = params.tools
        if params.tool_choice is not None:
            req["tool_choice"] = params.tool_choice
    schema = _json_param(params.json_schema, "json_schema")
    if schema:
        if not isinstance(schema, dict):
            raise NodeError("json_schema must be a JSON object", retryable=False)
        wrapped = schema if "schema" in schema else {"name": "output", "schema": schema}
        req["response_format"] = {"type": "json_schema", "json_schema": {"strict": True, **wrapped}}
    elif params.response_format == "json_object":
        req["response_format"] = {"type": "json_object"}
    elif params.response_format == "json_schema":
        raise NodeError("response_format json_schema needs json_schema", retryable=False)
    return req


class TokenEmitter:
    """Publishes streamed text as ephemeral notifications, coalescing tokens that arrive within
    `interval` seconds (one NOTIFY per token on a slow stream, fewer on a fast one). A failure to
    publish never fails the step: tokens are a live view, the step output is the record."""

    MAX_CHARS = 1500  # a NOTIFY payload must stay under 8000 bytes

    def __init__(self, ctx: NodeContext, interval: float = 0.05) -> None:
        self.ctx, self.interval = ctx, interval
        # the step's secret values: a secret split across tokens is held back, masked, then sent
        self.masker = StreamMasker((ctx.context or {}).get(SECRET_VALUES_KEY, ()))
        self.buffer: list[str] = []
        self.size = 0
        self.seq = 0
        self.last = 0.0
        self.enabled = ctx.emit is not None

    async def add(self, text: str) -> None:
        if not self.enabled:
            return
        self.buffer.append(text)
        self.size += len(text)
        if self.size >= self.MAX_CHARS or time.monotonic() - self.last >= self.interval:
            await self.flush()

    async def flush(self, final: bool = False) -> None:
        if not self.enabled or not (self.buffer or (final and self.masker.pending)):
            return
        text = self.masker.feed("".join(self.buffer))
        if final:
            text += self.masker.end()
        self.buffer, self.size = [], 0
        if not text:
            return
        payload = {
            "run_id": self.ctx.run_id,
            "node_id": self.ctx.node_id,
            "item_index": self.ctx.item_index,
            "attempt": self.ctx.attempt,
            "seq": self.seq,
            "text": text,
        }
        self.seq += 1
        self.last = time.monotonic()
        try:
            assert self.ctx.emit is not None
            await self.ctx.emit(TOKEN_CHANNEL, payload)
        except Exception as exc:  # the database is down or the payload too big: stop publishing
            log.warning(
                "run %s node %s: token stream off: %s", self.ctx.run_id, self.ctx.node_id, exc
            )
            self.enabled = False


def _tool_call(call_id: str | None, name: str, arguments: Any) -> dict[str, Any]:
    if not isinstance(arguments, str):  # some servers send the arguments as a JSON object
        return {"id": call_id, "type": "function", "name": name, "arguments": arguments}
    try:
        args: Any = json.loads(arguments) if arguments else {}
    except ValueError:
        args = arguments  # keep what the model said; the consumer decides
    return {"id": call_id, "type": "function", "name": name, "arguments": args}


async def complete_chat(client: AsyncOpenAI, req: dict[str, Any]) -> dict[str, Any]:
    """One chat completion in one piece. Sent with the SDK's own `post` (its auth, headers, errors
    and timeouts) without its typed layer: `create` walks the request through its TypedDict
    transform and the answer through pydantic models, ~10% of a worker's CPU on an LLM batch;
    the request here is plain JSON already and the answer is read with msgspec."""
    body = {k: v for k, v in req.items() if k != "extra_headers"}
    options: Any = {"headers": req.get("extra_headers") or {}}
    response = await client.post(
        "/chat/completions", body=body, options=options, cast_to=httpx.Response
    )
    return read_completion(response.content)


def read_completion(raw: bytes) -> dict[str, Any]:
    """The node's output from a chat completion's JSON; a malformed answer is a NodeError."""
    try:
        resp = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise NodeError(f"the model's answer is not JSON: {exc}") from exc
    choices = resp.get("choices") if isinstance(resp, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise NodeError("the model returned no choices")
    choice = choices[0]
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    calls = [
        _tool_call(c.get("id"), str(f.get("name") or ""), f.get("arguments") or "")
        for c in message.get("tool_calls") or []
        if isinstance(c, dict) and isinstance(f := c.get("function"), dict)
    ]
    usage = resp.get("usage")
    return {
        "text": message.get("content") or "",
        "usage": usage_dict(usage),
        "model": resp.get("model"),
        "finish_reason": choice.get("finish_reason"),
        "tool_calls": calls,
    }


async def _stream(
    client: AsyncOpenAI, req: dict[str, Any], emitter: TokenEmitter
) -> dict[str, Any]:
    stream = await client.chat.completions.create(
        **req, stream=True, stream_options={"include_usage": True}
    )
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Any = None
    model, finish = req["model"], None
    try:
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                delta = choice.delta
                if delta is not None and delta.content:
                    parts.append(delta.content)
                    await emitter.add(delta.content)
                for tc in (delta.tool_calls if delta is not None else None) or []:
                    acc = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    acc["id"] = tc.id or acc["id"]
                    if tc.function is not None:
                        acc["name"] += tc.function.name or ""
                        acc["arguments"] += tc.function.arguments or ""
                finish = choice.finish_reason or finish
    finally:
        await stream.close()
        await emitter.flush(final=True)
    return {
        "text": "".join(parts),
        "usage": usage_dict(usage),
        "model": model,
        "finish_reason": finish,
        "tool_calls": [_tool_call(c["id"], c["name"], c["arguments"]) for c in calls.values()],
    }


async def _in_batch(ctx: NodeContext) -> bool:
    """Whether the step's run is a batch item (read with the claim; else one indexed read)."""
    if ctx.in_batch is not None:
        return ctx.in_batch
    if ctx.db is None:
        return False
    async with ctx.db.connection() as conn:
        return await runs.is_batch_item(conn, ctx.run_id)


async def should_stream(ctx: NodeContext, params: LlmChatParams) -> bool:
    """The `stream` flag, else (null) stream when the node feeds an output node, except in a batch
    item: nobody waits on its tokens, and a 100k-item batch would pay a chunked response and a
    NOTIFY per token burst for every item."""
    if params.stream is not None:
        return params.stream
    return ctx.feeds_output and not await _in_batch(ctx)


class ChatCallParams(Protocol):
    """What `chat_under_permit` reads of a node's params (`LlmChatParams`, `agent.AgentParams`)."""

    @property
    def model(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def api_key(self) -> str: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def retries(self) -> int: ...
    @property
    def max_retry_wait_s(self) -> float: ...


async def chat_under_permit(
    ctx: NodeContext,
    params: ChatCallParams,
    req: dict[str, Any],
    call: Callable[[AsyncOpenAI], Awaitable[dict[str, Any]]],
    what: str,
) -> dict[str, Any]:
    """One chat request (`call(client)`, with its in-step retries) under a permit of its provider:
    no capacity or a 429 parks the step (`providers.permits`); the answer's usage corrects the
    token estimate."""
    client = await open_client(ctx, params.base_url, params.api_key, params.timeout_s)
    tokens = estimate_tokens(req["messages"], params.max_tokens)
    async with provider_call(ctx, params.base_url, params.api_key, tokens) as permit:
        out = await call_with_retries(
            lambda: call(client),
            retries=params.retries,
            max_wait_s=params.max_retry_wait_s,
            what=f"{what} {params.model}",
            model=params.model,
            base_url=params.base_url,
            park_on_429=permit is not None,
        )
        if permit is not None:
            permit.used(out["usage"]["total_tokens"])
    return out


async def run_llm_chat(ctx: NodeContext, params: LlmChatParams) -> Done:
    req = build_request(ctx, params)
    emitter = TokenEmitter(ctx)

    streaming = await should_stream(ctx, params)

    async def attempt(client: AsyncOpenAI) -> dict[str, Any]:
        if not streaming:
            return await complete_chat(client, req)
        if emitter.seq:  # text already went out live: a fresh try would repeat it, let the
            raise NodeError("stream broke after tokens were published")  # engine retry
        return await _stream(client, req, emitter)

    out = await chat_under_permit(ctx, params, req, attempt, "llm")
    if not out["tool_calls"]:
        del out["tool_calls"]
    if "response_format" in req:
        try:
            out["json"] = json.loads(out["text"])
        except ValueError as exc:
            raise NodeError(
                "the model did not return valid JSON", details={"text": out["text"][:500]}
            ) from exc
    return Done(out)


async def run_prompt(ctx: NodeContext, params: PromptParams) -> Done:
    """The template was rendered by the worker (like every param); this shapes it as messages."""
    messages = [{"role": "system", "content": params.system}] if params.system else []
    messages.append({"role": params.role, "content": params.template})
    return Done({"text": params.template, "messages": messages})


def _to_append(params: ChatMemoryParams) -> list[dict[str, Any]]:
    messages = parse_messages(params.messages, "messages")
    if params.user:
        messages.append({"role": "user", "content": params.user})
    if params.assistant:
        messages.append({"role": "assistant", "content": params.assistant})
    return messages


async def run_chat_memory(ctx: NodeContext, params: ChatMemoryParams) -> Done:
    if ctx.db is None or not ctx.owner_id:
        raise NodeError("chat_memory needs the worker's database and the run owner")
    if not params.session_id.strip():
        raise NodeError("session_id must not be empty", retryable=False)
    if not 1 <= params.limit <= 10_000:
        raise NodeError("limit must be between 1 and 10000", retryable=False)
    appended = 0
    async with ctx.db.connection() as conn:
        if params.mode == "append":
            rows = _to_append(params)
            if not rows:
                raise NodeError("append: give user, assistant or messages", retryable=False)
            await memory.append_messages(
                conn,
                ctx.owner_id,
                params.session_id,
                ctx.idempotency_key,
                [
                    (
                        m["role"],
                        m["content"] if isinstance(m["content"], str) else json.dumps(m["content"]),
                    )
                    for m in rows
                ],
            )
            appended = len(rows)
        messages = await memory.last_messages(conn, ctx.owner_id, params.session_id, params.limit)
    out: dict[str, Any] = {"session_id": params.session_id, "messages": messages}
    if params.mode == "append":
        out["appended"] = appended
    return Done(out)


register(
    NodeSpec(
        "llm_chat",
        "LLM chat",
        "llm",
        "Calls an OpenAI-compatible chat model (history, tools, structured output, streaming); "
        "outputs {text, usage, tool_calls?, json?}.",
        LlmChatParams,
        run_llm_chat,
        default_timeout_s=600.0,
        extra={"reports_usage": True},
    )
)
register(
    NodeSpec(
        "prompt",
        "Prompt",
        "llm",
        "Renders a sandboxed template into {text, messages} for a chat model.",
        PromptParams,
        run_prompt,
    )
)
register(
    NodeSpec(
        "chat_memory",
        "Chat memory",
        "llm",
        "Loads or appends the conversation of a session (stored per user in PostgreSQL).",
        ChatMemoryParams,
        run_chat_memory,
    )
)
