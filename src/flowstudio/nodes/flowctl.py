"""Flow-control nodes that the engine itself carries out: `map` (fan-out/fan-in) and `subflow`.

`map` evaluates `items` (a sandboxed expression, e.g. `input.rows` or `inputs.urls`) and returns
`Expand(items)`; the engine (`engine/fanout.py`) runs the `body` once per item as its own checkpointed
step — `body` is either a node (`{"type", "params", "retry"?, "timeout_s"?}`, params see `item` and
`input` = the item) or a flow (`{"flow_id", "version"?}`: one child run per item) — at most
`concurrency` at a time, and outputs the results in item order. `subflow` returns `StartChild`; the
engine (`engine/children.py`) starts the pinned flow version as a child run and completes the step
with the child's outputs (or fails it with the child's error).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from flowstudio.nodes.bounds import MAP_MAX_ITEMS as MAX_ITEMS
from flowstudio.nodes.bounds import Concurrency, RetryPolicy, StepTimeout, Version
from flowstudio.nodes.registry import Expand, NodeContext, NodeError, NodeSpec, StartChild, register
from flowstudio.nodes.templating import TemplateError, evaluate


class MapBody(msgspec.Struct, kw_only=True):
    type: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    flow_id: str | None = None
    version: Version | None = None
    retry: RetryPolicy | None = None  # bounded like a node's data.retry
    timeout_s: StepTimeout | None = None


class MapParams(msgspec.Struct, kw_only=True):
    items: str  # expression evaluating to a list, e.g. "input.rows"
    body: MapBody
    concurrency: Concurrency = 10
    on_error: Literal["fail_fast", "continue"] = "fail_fast"


class SubflowParams(msgspec.Struct, kw_only=True):
    flow_id: str
    version: Version | None = None
    inputs: dict[str, Any] | None = None  # default: the port input (if an object) or {"input": it}


def _check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NodeError(f"{what} must be a flow id (UUID), got {value!r}", retryable=False) from exc


async def run_map(ctx: NodeContext, params: MapParams) -> Expand:
    if not 1 <= params.concurrency <= 1000:
        raise NodeError("concurrency must be between 1 and 1000", retryable=False)
    if params.body.flow_id is None and params.body.type is None:
        raise NodeError("body needs a node `type` or a `flow_id`", retryable=False)
    if params.body.flow_id is not None:
        _check_uuid(params.body.flow_id, "body.flow_id")
    try:
        items = evaluate(params.items, ctx.context)
    except TemplateError as exc:
        raise NodeError(str(exc), retryable=False) from exc
    if not isinstance(items, list | tuple):
        raise NodeError(
            f"items must evaluate to a list, got {type(items).__name__}", retryable=False
        )
    if len(items) > MAX_ITEMS:
        raise NodeError(f"at most {MAX_ITEMS} items", retryable=False)
    return Expand(list(items))


async def run_subflow(ctx: NodeContext, params: SubflowParams) -> StartChild:
    flow_id = _check_uuid(params.flow_id, "flow_id")
    if params.inputs is not None:
        inputs = params.inputs
    elif isinstance(ctx.input, dict):
        inputs = dict(ctx.input)
    else:
        inputs = {"input": ctx.input}
    return StartChild(flow_id, params.version, inputs)


register(
    NodeSpec(
        "map",
        "Map",
        "flow",
        "Runs a body node or flow once per item of a list (each item a durable step), "
        "`concurrency` at a time; outputs the results in order.",
        MapParams,
        run_map,
        expressions=("items",),
        deferred=("body",),
    )
)
register(
    NodeSpec(
        "subflow",
        "Subflow",
        "flow",
        "Runs another flow (pinned version) as a durable child run; outputs its outputs.",
        SubflowParams,
        run_subflow,
    )
)
