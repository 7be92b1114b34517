"""OpenAI-compatible chat endpoint: any OpenAI client can call a flow as if it were a model.

`POST /api/v1/openai/chat/completions` (`chat_completions`): `model` is a flow id or the caller's
endpoint name (`api.access.resolve_flow_ref`); the last user message becomes `inputs.input_value` and
the whole list `inputs.messages`; the run starts through `api.runs.start_flow_run` (access, published
version, `Idempotency-Key`). Without `stream` it waits (`api.events.wait_terminal`) and answers a
`chat.completion` whose content is `answer_text(outputs)`; with `stream` it follows the run
(`api.events.stream_run_events`) in `completion_chunks`: LLM `token` events of the nodes feeding an
output node become content deltas, the final text (or the part tokens did not carry) the last one,
then `data: [DONE]`; the stream is guarded (`api/streams.py`: per-user cap, credentials re-checked,
an `error` chunk when they are revoked). `GET /api/v1/openai/models` lists the caller's runnable flows
as models; `owned_by` is `me` or `shared`, never a user id. Every error is
OpenAI's `{"error": {"message", "type", "code", "param"}}` (`openai_error`, also for 401 and body
errors, via route-level exception handlers); failures of the run itself say `x-should-retry: false`
so SDKs do not start the flow again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
from litestar import Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import ServerSentEventMessage

from flowstudio.api.access import resolve_flow_ref
from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, requires
from flowstudio.api.errors import Problem, problem_of
from flowstudio.api.events import EventStream, stream_run_events, wait_terminal
from flowstudio.api.runs import Usage, start_flow_run, total_usage
from flowstudio.api.streams import (
    guarded_stream,
    release_stream,
    reserve_stream,
    still_authorized,
)
from flowstudio.engine.errors import CommandError
from flowstudio.engine.flowcache import load_graph
from flowstudio.store import flows as flow_store
from flowstudio.store import runs as run_store

WAIT_S = 300.0
ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


class ContentPart(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatIn(msgspec.Struct, kw_only=True):
    model: str
    messages: list[ChatMessage]
    stream: bool = False


class AssistantMessage(msgspec.Struct, kw_only=True):
    role: Literal["assistant"]
    content: str


class CompletionChoice(msgspec.Struct, kw_only=True):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop"]
    logprobs: None


class ChatCompletion(msgspec.Struct, kw_only=True):
    """OpenAI's `chat.completion`, plus the flow run's id."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    run_id: str


class ModelOut(msgspec.Struct, kw_only=True):
    id: str  # the endpoint name of an own flow that has one, else the flow id
    object: Literal["model"]
    created: int
    owned_by: Literal["me", "shared"]
    name: str


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"]
    data: list[ModelOut]


COMPLETION_DOCS = {
    200: ResponseSpec(
        ChatCompletion,
        generate_examples=False,
        description="The completion. With `stream`: text/event-stream of `chat.completion.chunk` "
        "objects, then `data: [DONE]`.",
    )
}


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.param, self.headers = param, headers


def openai_error(status: int, message: str, param: str | None = None) -> OpenAIError:
    fallback = ("server_error", "server_error") if status >= 500 else ("invalid_request_error", "")
    type_, code = ERROR_TYPES.get(status, fallback)
    return OpenAIError(status, message, type_, code or f"http_{status}", param)


def _error_body(exc: OpenAIError) -> dict[str, Any]:
    return {
        "error": {"message": exc.message, "type": exc.type, "code": exc.code, "param": exc.param}
    }


def _on_openai_error(_: AnyRequest, exc: OpenAIError) -> Response[Any]:
    return Response(_error_body(exc), status_code=exc.status, headers=exc.headers)


def _on_problem(request: AnyRequest, exc: Problem) -> Response[Any]:
    status = 400 if exc.status == 422 else exc.status
    param = None
    if exc.errors:  # "body.messages[0]" -> "messages[0]"
        param = str(exc.errors[0].get("path", "")).removeprefix("body.") or None
    message = exc.detail or exc.title
    if exc.status == 404:
        message = "The model does not exist or you do not have access to it"
    error = openai_error(status, message, param)
    error.headers = exc.headers  # e.g. Retry-After
    return _on_openai_error(request, error)


def _on_command_error(request: AnyRequest, exc: CommandError) -> Response[Any]:
    return _on_problem(request, problem_of(exc))


def _on_http(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    status = 400 if isinstance(exc, ValidationException) else exc.status_code
    return _on_openai_error(request, openai_error(status, str(exc.detail)))


HANDLERS: dict[Any, Any] = {
    OpenAIError: _on_openai_error,
    Problem: _on_problem,
    CommandError: _on_command_error,
    HTTPException: _on_http,
}


def decode_chat(raw: bytes) -> ChatIn:
    try:
        return msgspec.json.decode(raw, type=ChatIn)
    except msgspec.ValidationError as exc:
        msg, _, where = str(exc).partition(" - at `$")
        raise openai_error(400, msg, where.rstrip("`").lstrip(".") or None) from exc
    except msgspec.DecodeError as exc:
        raise openai_error(400, f"invalid JSON body: {exc}") from exc


def message_text(message: ChatMessage) -> str:
    if isinstance(message.content, list):
        return "".join(p.text or "" for p in message.content if p.type == "text")
    return message.content or ""


def last_user_text(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message_text(message)
    raise openai_error(400, "messages must contain a user message", "messages")


def answer_text(outputs: Any) -> str:
    """What the assistant says: `outputs.text` if the flow produced one, else the outputs as JSON."""
    if isinstance(outputs, dict) and isinstance(outputs.get("text"), str):
        return outputs["text"]
    if isinstance(outputs, str):
        return outputs
    return json.dumps(outputs, ensure_ascii=False)


def run_error_message(run: dict[str, Any]) -> str:
    error = run.get("error")
    detail = error.get("message") if isinstance(error, dict) else error
    return f"flow run {run['id']} {run['status']}" + (f": {detail}" if detail else "")


def _completion_id(run_id: str) -> str:
    return f"chatcmpl-{run_id}"


@post(
    "/api/v1/openai/chat/completions",
    status_code=200,
    exception_handlers=HANDLERS,
    guards=[requires("runs:write")],
    responses=COMPLETION_DOCS,
)
async def chat_completions(
    request: AnyRequest, state: State, user: CurrentUser, conn: RequestConn
) -> Response[ChatCompletion] | EventStream:
    data = decode_chat(await request.body())
    if not data.messages:
        raise openai_error(400, "messages must not be empty", "messages")
    flow_id = await resolve_flow_ref(conn, user, data.model)
    inputs = {
        "input_value": last_user_text(data.messages),
        "messages": msgspec.to_builtins(data.messages),
    }
    if data.stream:
        reserve_stream(request, user)  # a user over the stream cap starts no run
    try:
        created = await start_flow_run(
            state, conn, user, flow_id, inputs, None, request.headers.get("idempotency-key")
        )
        if data.stream:
            run = await run_store.get_run(conn, created.id)
            assert run is not None
            graph = await load_graph(conn, run["flow_id"], run["flow_version"])
    except BaseException:
        if data.stream:
            release_stream(request, user)
        raise
    headers = {"x-run-id": created.id}
    if data.stream:
        assert run is not None
        answer_nodes = {
            pred
            for node in graph.nodes.values()
            if node.type == "output"
            for pred in graph.predecessors(node.id)
        }
        chunks = completion_chunks(state, created.id, data.model, run, answer_nodes)
        revoked = ServerSentEventMessage(data=json.dumps({"error": REVOKED}))
        guarded = guarded_stream(request, user, chunks, revoked, reserved=True)
        return EventStream(guarded, headers={**headers, "Cache-Control": "no-cache"})
    run = await wait_terminal(state.pool, state.hub, created.id, WAIT_S)
    if not await still_authorized(request, user):
        raise openai_error(401, REVOKED["message"])
    no_retry = {**headers, "x-should-retry": "false"}
    if run["status"] in ("failed", "cancelled"):
        raise OpenAIError(502, run_error_message(run), "server_error", "run_failed", None, no_retry)
    if run["status"] != "succeeded":
        message = f"flow run {created.id} is still {run['status']}; follow it at /api/v1/runs"
        raise OpenAIError(504, message, "server_error", "run_timeout", None, no_retry)
    usage = total_usage(await run_store.get_steps(conn, created.id))
    reply = AssistantMessage(role="assistant", content=answer_text(run["outputs"]))
    body = ChatCompletion(
        id=_completion_id(created.id),
        object="chat.completion",
        created=int(run["created_at"].timestamp()),
        model=data.model,
        choices=[CompletionChoice(index=0, message=reply, finish_reason="stop", logprobs=None)],
        usage=usage,
        run_id=created.id,
    )
    return Response(body, status_code=200, headers=headers)


REVOKED = {
    "message": "credentials revoked; stream closed",
    "type": "invalid_request_error",
    "code": "invalid_api_key",
}


def _chunk(
    run_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> ServerSentEventMessage:
    body = {
        "id": _completion_id(run_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return ServerSentEventMessage(data=json.dumps(body, ensure_ascii=False))


async def completion_chunks(
    state: State, run_id: str, model: str, run: dict[str, Any], answer_nodes: set[str]
) -> AsyncIterator[ServerSentEventMessage]:
    created = int(run["created_at"].timestamp())
    yield _chunk(run_id, model, created, {"role": "assistant", "content": ""})
    streamed = ""
    async for message in stream_run_events(state.pool, state.hub, run_id, 0):
        if message.event == "token":
            token = json.loads(str(message.data))
            if token.get("node_id") in answer_nodes and token.get("text"):
                streamed += token["text"]
                yield _chunk(run_id, model, created, {"content": token["text"]})
        elif message.comment:  # keepalive, without the empty `data:` line that clients parse
            yield ServerSentEventMessage(comment=message.comment, data=None)
        elif message.event == "end":
            break
    async with state.pool.connection() as conn:
        final = await run_store.get_run(conn, run_id)
    if final is None or final["status"] != "succeeded":
        error = {"message": run_error_message(final or {"id": run_id, "status": "deleted"})}
        error.update(type="server_error", code="run_failed")
        yield ServerSentEventMessage(data=json.dumps({"error": error}))
    else:
        text = answer_text(final["outputs"])
        rest = text[len(streamed) :] if text.startswith(streamed) else ("" if streamed else text)
        if rest:
            yield _chunk(run_id, model, created, {"content": rest})
        yield _chunk(run_id, model, created, {}, "stop")
    yield ServerSentEventMessage(data="[DONE]")


@get("/api/v1/openai/models", exception_handlers=HANDLERS, guards=[requires("flows:read")])
async def list_models(user: CurrentUser, conn: RequestConn) -> ModelList:
    """Flows the caller may run, as models: own flows by endpoint name when set, else by id."""
    data = []
    for row in await flow_store.list_visible_flows(conn, user.id, False):
        if row["share_permission"] == "view":
            continue
        own_name = row["endpoint_name"] if row["share_permission"] is None else None
        data.append(
            ModelOut(
                id=own_name or str(row["id"]),
                object="model",
                created=int(row["created_at"].timestamp()),
                owned_by="me" if row["share_permission"] is None else "shared",
                name=row["name"],
            )
        )
    return ModelList(object="list", data=data)


ROUTES = [chat_completions, list_models]
