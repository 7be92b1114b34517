"""Data and control nodes: `router` (multi-way branch), `merge` (fan-in), `json_transform` (JMESPath),
`text_ops` (split / join / regex replace, extract, match with a timeout and a length guard).

`run_router` evaluates each route's expression in the template sandbox (`templating.evaluate`), in
order, and leaves by the first true route's port (else `default`); its ports come from its params
(`router_ports`, declared as the spec's `dynamic_outputs`, so the validator checks edges against them).
`run_merge` runs once every upstream node is terminal (the planner's rule) and gathers the outputs of
the inputs that ran (skipped branches are absent). `run_json_transform` applies a compiled JMESPath
expression (`_compile_jmespath`, cached). `run_text_ops` dispatches on `operation`; regexes use the
`regex` package, whose matching takes a timeout (the author's `timeout_s`, capped by the server's
REGEX_TIMEOUT_MAX_S) and runs in a worker thread with the GIL released, so a catastrophic pattern
fails the step in bounded time without ever blocking the worker's event loop.
"""

from __future__ import annotations

import contextlib
import json
from functools import lru_cache
from typing import Any, Literal

import anyio
import jmespath
import jmespath.exceptions
import msgspec
import regex

from flowstudio.nodes.bounds import RegexTimeout, Splits, TextLength
from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeSpec, Port, register
from flowstudio.nodes.templating import RESERVED, TemplateError, evaluate

DEFAULT_REGEX_CAP_S = 1.0  # REGEX_TIMEOUT_MAX_S when settings say nothing
PORT_NAME = regex.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class Route(msgspec.Struct, kw_only=True):
    name: str  # the output port (and branch) this route leaves by
    expression: str  # e.g. `classify.json.label == 'spam'` (inputs, input, upstream outputs)


class RouterParams(msgspec.Struct, kw_only=True):
    routes: list[Route] = msgspec.field(default_factory=list)
    default: str = "default"  # the port taken when no route matches


class MergeParams(msgspec.Struct, kw_only=True):
    mode: Literal["dict", "list", "first"] = "dict"  # {source: output} / [outputs] / first output


class JsonTransformParams(msgspec.Struct, kw_only=True):
    expression: str  # JMESPath, e.g. `items[?score > `5`].name`
    data: Any = None  # default: the input; a string is parsed as JSON (use `| tojson`)


class TextOpsParams(msgspec.Struct, kw_only=True):
    operation: Literal["split", "join", "replace", "extract", "extract_all", "match"] = "split"
    text: str | None = None  # default: the input (a string, or an object's `text`)
    items: list[Any] | str | None = None  # join: the list (or its JSON); default: the input
    separator: str = "\n"  # split (when no pattern) and join
    pattern: str | None = None  # a regular expression (split, replace, extract*, match)
    replacement: str = ""
    ignore_case: bool = False
    multiline: bool = False
    dotall: bool = False
    max_splits: Splits = 0  # 0: no limit
    timeout_s: RegexTimeout = 1.0  # regex matching time limit
    max_length: TextLength = 1_000_000  # refuse longer texts


def router_ports(params: dict[str, Any]) -> tuple[Port, ...]:
    names = [str(r["name"]) for r in params.get("routes") or []]
    return tuple(Port(n) for n in dict.fromkeys([*names, str(params.get("default", "default"))]))


async def run_router(ctx: NodeContext, params: RouterParams) -> Done:
    names = [r.name for r in params.routes] + [params.default]
    bad = [n for n in names if not PORT_NAME.match(n)]
    if bad or len(set(names)) != len(names):
        raise NodeError(
            f"route names must be unique identifiers, distinct from default: {bad or names}",
            retryable=False,
        )
    for route in params.routes:
        try:
            taken = bool(evaluate(route.expression, ctx.context))
        except TemplateError as exc:
            raise NodeError(f"route {route.name!r}: {exc}", retryable=False) from exc
        if taken:
            return Done({"route": route.name, "value": ctx.input}, branch=route.name)
    return Done({"route": params.default, "value": ctx.input}, branch=params.default)


async def run_merge(ctx: NodeContext, params: MergeParams) -> Done:
    # the template context holds the outputs of this node's upstream nodes that succeeded
    sources = sorted(k for k in ctx.context if k not in RESERVED and ":" not in k)
    outputs = {k: ctx.context[k] for k in sources}
    match params.mode:
        case "dict":
            return Done(outputs)
        case "list":
            return Done(list(outputs.values()))
        case _:
            return Done(next((v for v in outputs.values() if v is not None), None))


@lru_cache(maxsize=512)
def _compile_jmespath(expression: str) -> Any:
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise NodeError(f"invalid JMESPath: {exc}", retryable=False) from exc


async def run_json_transform(ctx: NodeContext, params: JsonTransformParams) -> Done:
    data = ctx.input if params.data is None else params.data
    if isinstance(data, str):
        with contextlib.suppress(ValueError):  # a plain string is data too
            data = json.loads(data)
    try:
        result = _compile_jmespath(params.expression).search(data)
    except jmespath.exceptions.JMESPathError as exc:
        raise NodeError(f"JMESPath error: {exc}", retryable=False) from exc
    return Done({"result": result})


def _input_text(ctx: NodeContext, text: str | None) -> str:
    if text is not None:
        return text
    value = ctx.input
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    if isinstance(value, str):
        return value
    raise NodeError("no text: set `text` or connect a node that outputs text", retryable=False)


def _items(ctx: NodeContext, items: list[Any] | str | None) -> list[Any]:
    value: Any = ctx.input if items is None else items
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise NodeError("items: not a JSON list (use `| tojson`)", retryable=False) from exc
    if isinstance(value, dict):
        value = value.get("items", value.get("matches"))
    if not isinstance(value, list):
        raise NodeError("join needs a list of items", retryable=False)
    return value


def _regex(params: TextOpsParams) -> Any:
    if not params.pattern:
        raise NodeError(f"{params.operation} needs a pattern", retryable=False)
    flags = regex.V0
    flags |= regex.IGNORECASE if params.ignore_case else 0
    flags |= regex.MULTILINE if params.multiline else 0
    flags |= regex.DOTALL if params.dotall else 0
    try:
        return regex.compile(params.pattern, flags)
    except regex.error as exc:
        raise NodeError(f"invalid pattern: {exc}", retryable=False) from exc


def _match_value(m: Any) -> Any:
    groups = m.groups()
    if not groups:
        return m.group(0)
    return groups[0] if len(groups) == 1 else list(groups)


def regex_timeout(ctx: NodeContext, params: TextOpsParams) -> float:
    """The author's timeout, capped by the server's REGEX_TIMEOUT_MAX_S."""
    cap = float(getattr(ctx.settings, "regex_timeout_max_s", DEFAULT_REGEX_CAP_S) or 0)
    return max(0.001, min(params.timeout_s, cap if cap > 0 else DEFAULT_REGEX_CAP_S))


def text_op(ctx: NodeContext, params: TextOpsParams, t: float) -> dict[str, Any]:
    if params.operation == "join":
        return {"text": params.separator.join(str(i) for i in _items(ctx, params.items))}
    text = _input_text(ctx, params.text)
    if len(text) > params.max_length:
        raise NodeError(f"text longer than max_length {params.max_length}", retryable=False)
    if params.operation == "split" and not params.pattern:
        parts = text.split(params.separator, params.max_splits or -1)
        return {"items": parts, "count": len(parts)}
    rx = _regex(params)
    match params.operation:
        case "split":
            parts = rx.split(text, maxsplit=params.max_splits, timeout=t, concurrent=True)
            return {"items": parts, "count": len(parts)}
        case "replace":
            new, n = rx.subn(params.replacement, text, timeout=t, concurrent=True)
            return {"text": new, "count": n}
        case "extract":
            m = rx.search(text, timeout=t, concurrent=True)
            if m is None:
                return {"match": None, "groups": [], "named": {}}
            return {"match": m.group(0), "groups": list(m.groups()), "named": m.groupdict()}
        case "extract_all":
            found = [_match_value(m) for m in rx.finditer(text, timeout=t, concurrent=True)]
            return {"matches": found, "count": len(found)}
        case _:
            return {"matched": rx.search(text, timeout=t, concurrent=True) is not None}


async def run_text_ops(ctx: NodeContext, params: TextOpsParams) -> Done:
    """In a worker thread (the regex releases the GIL: `concurrent=True`), so a slow pattern never
    holds the event loop; the thread ends at the capped timeout, so it never outlives the node."""
    t = regex_timeout(ctx, params)
    try:
        return Done(await anyio.to_thread.run_sync(text_op, ctx, params, t, abandon_on_cancel=True))
    except TimeoutError as exc:
        raise NodeError(
            f"regex took longer than {t:g}s (catastrophic backtracking?)", retryable=False
        ) from exc
    except regex.error as exc:
        raise NodeError(f"regex error: {exc}", retryable=False) from exc


register(
    NodeSpec(
        "router",
        "Router",
        "data",
        "Branches by the first route whose expression is true (one port per route, plus default).",
        RouterParams,
        run_router,
        outputs=(Port("default"),),
        dynamic_outputs=router_ports,
    )
)
register(
    NodeSpec(
        "merge",
        "Merge",
        "data",
        "Waits for every upstream branch, then gathers the outputs of those that ran.",
        MergeParams,
        run_merge,
    )
)
register(
    NodeSpec(
        "json_transform",
        "JSON transform",
        "data",
        "Reshapes JSON with a JMESPath expression; outputs {result}.",
        JsonTransformParams,
        run_json_transform,
    )
)
register(
    NodeSpec(
        "text_ops",
        "Text operations",
        "data",
        "Split, join, regex replace / extract / match (with a time limit).",
        TextOpsParams,
        run_text_ops,
    )
)
