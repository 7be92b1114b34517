"""`agent`: an LLM tool-calling loop whose tools are nodes or flows, each tool call a durable step.

`run_agent` runs ONE turn: it rebuilds the conversation from the state the engine saved after the
previous turn (`ctx.context["agent"]`, loaded by `engine/agent.load_agent_view`), appends the results
of that turn's tool calls (a failed tool's error is shown to the model), asks the model once
(`llm.chat_under_permit`: `llm_client.call_with_retries` with the step's Idempotency-Key, under a
permit of its provider as for `llm_chat`; no capacity or a 429 parks the step and the turn is asked
again when it wakes), and either returns `CallTools` — the
engine checkpoints the state and runs each call as its own step (a node of `type` with `params`
templated over `{{ args.x }}`, or a child run of `flow_id` with the arguments as inputs) — or, when
the model answers without tools or `max_turns` is reached, `Done({text, turns, usage, messages})`.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from flowstudio.nodes.bounds import CallTimeout, MaxTokens, Retries, RetryWait, Temperature, Turns
from flowstudio.nodes.llm import chat_under_permit, complete_chat
from flowstudio.nodes.registry import CallTools, Done, NodeContext, NodeError, NodeSpec, register


class AgentTool(msgspec.Struct, kw_only=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    type: str | None = None  # a node type run as this tool
    params: dict[str, Any] = msgspec.field(default_factory=dict)  # templates see {{ args.x }}
    flow_id: str | None = None  # or: a flow run as a child run with the arguments as inputs


class AgentParams(msgspec.Struct, kw_only=True):
    model: str
    prompt: str
    tools: list[AgentTool] = msgspec.field(default_factory=list)
    api_key: str = ""
    base_url: str | None = None
    system: str | None = None
    max_turns: Turns = 8
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    timeout_s: CallTimeout = 120.0
    retries: Retries = 2
    max_retry_wait_s: RetryWait = 20.0


def _result_text(result: dict[str, Any] | None) -> str:
    if result is None:
        return "error: the tool produced no result"
    if result["ok"]:
        return json.dumps(result["output"], default=str)[:20_000]
    error = result.get("error") or {}
    return f"error: {error.get('message', result.get('status', 'failed'))}"


def _add_usage(total: dict[str, int], usage: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + usage.get(k, 0) for k in usage}


def _start(params: AgentParams) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if params.system:
        messages.append({"role": "system", "content": params.system})
    messages.append({"role": "user", "content": params.prompt})
    return {"messages": messages, "pending": [], "turns": 0, "usage": {}}


async def run_agent(ctx: NodeContext, params: AgentParams) -> Done | CallTools:
    if not 1 <= params.max_turns <= 50:
        raise NodeError("max_turns must be between 1 and 50", retryable=False)
    view = ctx.context.get("agent") or {}
    state = view.get("state") or _start(params)
    messages = list(state["messages"])
    for call in state["pending"]:
        messages.append(
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": _result_text(view.get("results", {}).get(str(call["id"]))),
            }
        )
    turn = state["turns"] + 1
    req: dict[str, Any] = {
        "model": params.model,
        "messages": messages,
        "extra_headers": {"Idempotency-Key": f"{ctx.idempotency_key}:{turn}"},
    }
    if params.tools and turn < params.max_turns:
        req["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in params.tools
        ]
    if params.temperature is not None:
        req["temperature"] = params.temperature
    if params.max_tokens is not None:
        req["max_tokens"] = params.max_tokens
    out = await chat_under_permit(
        ctx, params, req, lambda client: complete_chat(client, req), "agent"
    )
    usage = _add_usage(state["usage"], out["usage"])
    calls = [
        {"id": c["id"] or f"call_{turn}_{i}", "name": c["name"], "arguments": c["arguments"]}
        for i, c in enumerate(out["tool_calls"])
    ]
    if calls and "tools" in req:
        assistant = {
            "role": "assistant",
            "content": out["text"] or None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                }
                for c in calls
            ],
        }
        return CallTools(
            calls,
            {"messages": [*messages, assistant], "pending": calls, "turns": turn, "usage": usage},
        )
    final = [*messages, {"role": "assistant", "content": out["text"]}]
    return Done({"text": out["text"], "turns": turn, "usage": usage, "messages": final})


register(
    NodeSpec(
        "agent",
        "Agent",
        "llm",
        "An LLM tool-calling loop; each tool (a node or a flow) call is its own durable step.",
        AgentParams,
        run_agent,
        deferred=("tools",),
        default_timeout_s=600.0,
        extra={"reports_usage": True},
    )
)
