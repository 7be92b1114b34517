"""Control nodes: `condition` (two-way branch on a safe expression), `delay` (durable timer), `fail`.

`condition` evaluates its `expression` in the template sandbox and returns `Done(..., branch="true" or
"false")`; the planner skips the untaken port's subgraph. `delay` returns `Wait(seconds)`: the step is
parked as `waiting` with a due time in PostgreSQL and the orchestrator's timer loop finishes it.
`wait_for_signal` parks the step until a signal row arrives (`engine/control.py`) or its timeout.
`fail` raises (for tests and for explicit error paths); `succeed_on_attempt` makes it a flaky node.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from flowstudio.nodes.bounds import Attempt, DelaySeconds, WaitSeconds
from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeSpec, Port, Wait, register
from flowstudio.nodes.templating import TemplateError, evaluate


class ConditionParams(msgspec.Struct, kw_only=True):
    expression: str


class DelayParams(msgspec.Struct, kw_only=True):
    seconds: DelaySeconds = 1.0


class WaitForSignalParams(msgspec.Struct, kw_only=True):
    timeout_s: WaitSeconds | None = (
        None  # None: wait for ever (days are fine: it is a row, not a sleep)
    )
    on_timeout: Literal["fail", "continue"] = "fail"  # continue: leave by the `timeout` port


class FailParams(msgspec.Struct, kw_only=True):
    message: str = "failed on purpose"
    succeed_on_attempt: Attempt = 0  # 0: always fail; N: attempts >= N succeed
    retryable: bool = True


async def run_condition(ctx: NodeContext, params: ConditionParams) -> Done:
    try:
        value = bool(evaluate(params.expression, ctx.context))
    except TemplateError as exc:
        raise NodeError(str(exc), retryable=False) from exc
    return Done({"result": value, "value": ctx.input}, branch="true" if value else "false")


async def run_delay(ctx: NodeContext, params: DelayParams) -> Wait:
    if params.seconds < 0:
        raise NodeError("seconds must be >= 0", retryable=False)
    return Wait(params.seconds, ctx.input)


async def run_wait_for_signal(ctx: NodeContext, params: WaitForSignalParams) -> Wait:
    if params.timeout_s is not None and params.timeout_s <= 0:
        raise NodeError("timeout_s must be > 0", retryable=False)
    return Wait(params.timeout_s, None, accepts_signal=True)


async def run_fail(ctx: NodeContext, params: FailParams) -> Done:
    if params.succeed_on_attempt and ctx.attempt >= params.succeed_on_attempt:
        return Done({"attempt": ctx.attempt, "value": ctx.input})
    raise NodeError(params.message, retryable=params.retryable)


register(
    NodeSpec(
        "condition",
        "Condition",
        "logic",
        "Branches on an expression (e.g. `inputs.score > 5`): true or false port.",
        ConditionParams,
        run_condition,
        outputs=(Port("true"), Port("false")),
        expressions=("expression",),
    )
)
register(
    NodeSpec(
        "delay",
        "Delay",
        "logic",
        "Waits durably (a timer row in PostgreSQL), then passes its input on.",
        DelayParams,
        run_delay,
    )
)
register(
    NodeSpec(
        "fail",
        "Fail",
        "logic",
        "Raises an error (optionally until attempt N).",
        FailParams,
        run_fail,
    )
)
register(
    NodeSpec(
        "wait_for_signal",
        "Wait for signal",
        "logic",
        "Parks the run until POST /runs/{id}/signal delivers a payload for this node (its "
        "output), or times out (fail, or continue by the timeout port).",
        WaitForSignalParams,
        run_wait_for_signal,
        outputs=(Port("out"), Port("timeout")),
    )
)
