"""Sandboxed templating of node params: `{{ node_id.field }}`, `{{ inputs.name }}`, `{{ secrets.NAME }}`.

One `sandbox.LimitedSandbox` (Jinja's immutable sandbox plus loop/size/time limits and opaque
secrets, see `nodes/sandbox.py`). `rendering(deadline)` opens the budget of one node's render;
`render_params(params, context)` renders every string inside params (recursively), letting secrets
out only under the top-level keys in `CREDENTIAL_FIELDS` (as placeholders swapped for the values after
Jinja returns: a transformed placeholder is refused); the output of one string is capped;
`referenced_names(params)` lists the top-level names the templates use, so the worker loads only those
upstream outputs and the validator can refuse references to nodes that do not exist.
`referenced_secrets(params)` lists the NAMEs used as `secrets.NAME` / `secrets["NAME"]`, so the worker
decrypts only those (`worker/context.py`).
`evaluate(expression, context)` evaluates a safe boolean/value expression for `condition` (never
yielding a secret). `render_fields` is what the worker calls (`worker/context.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, meta, nodes

from flowstudio.nodes import sandbox_limits as limits
from flowstudio.nodes.sandbox import (
    OPAQUE,
    PLACEHOLDER_CLOSE,
    PLACEHOLDER_OPEN,
    LimitedSandbox,
    Secret,
    SecretMisuse,
)

ENV = LimitedSandbox()
# Top-level param keys whose strings may carry a secret (the whole subtree: `auth.token`, each header).
CREDENTIAL_FIELDS = frozenset({"api_key", "auth", "headers"})
RESERVED = frozenset({"inputs", "input", "secrets", "run", "item", "args", "tool_call", "agent"})


class TemplateError(ValueError):
    pass


def is_template(s: str) -> bool:
    return "{{" in s or "{%" in s


@lru_cache(maxsize=2048)
def _compile(source: str) -> Any:
    try:
        return ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message} (line {exc.lineno})") from exc


def walk_strings(value: Any, keep: Callable[[str], bool] = is_template) -> list[str]:
    """Every string in nested dicts/lists that `keep` accepts, depth first. (`worker/context.py:
    _template_sources` is this walk with a cheaper test, kept in the worker's hot path for now.)"""
    match value:
        case str():
            return [value] if keep(value) else []
        case dict():
            return [s for v in value.values() for s in walk_strings(v, keep)]
        case list():
            return [s for v in value for s in walk_strings(v, keep)]
        case _:
            return []


def referenced_names(params: Any, expressions: list[str] | None = None) -> set[str]:
    names: set[str] = set()
    for source in walk_strings(params):
        try:
            names |= meta.find_undeclared_variables(ENV.parse(source))
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template syntax error: {exc.message} (line {exc.lineno})"
            ) from exc
    for expr in expressions or []:
        try:
            names |= meta.find_undeclared_variables(ENV.parse("{{ " + expr + " }}"))
        except TemplateSyntaxError as exc:
            raise TemplateError(f"expression syntax error: {exc.message}") from exc
    return names - set(ENV.globals)


def _secret_names_in(tree: nodes.Template) -> set[str]:
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "secrets"):
            continue
        if isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.add(node.arg.value)
    return found


def referenced_secrets(params: Any, expressions: list[str] | None = None) -> set[str]:
    """Secret names used literally; a dynamic `secrets[expr]` loads nothing (and fails as undefined)."""
    sources = walk_strings(params) + ["{{ " + e + " }}" for e in expressions or []]
    names: set[str] = set()
    for source in sources:
        if "secrets" not in source:
            continue
        try:
            names |= _secret_names_in(ENV.parse(source))
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template syntax error: {exc.message} (line {exc.lineno})"
            ) from exc
    return names


@contextmanager
def rendering(timeout_s: float | None = None) -> Iterator[limits.Render]:
    """One node's render: a shared loop budget and, with `timeout_s`, a deadline."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    token = limits.set_render(limits.Render(deadline=deadline))
    try:
        yield limits.current()
    finally:
        limits.reset_render(token)


def _capped_output(chunks: Iterator[str]) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limits.LIMITS.max_output:
            raise limits.TemplateLimitError(
                f"template output over {limits.LIMITS.max_output} chars (TEMPLATE_MAX_OUTPUT)"
            )
        out.append(chunk)
    return "".join(out)


def _reveal(text: str, render: limits.Render) -> str:
    if PLACEHOLDER_OPEN not in text and PLACEHOLDER_CLOSE not in text:
        return text
    for placeholder, value in render.placeholders.items():
        text = text.replace(placeholder, value)
    if render.placeholders and (PLACEHOLDER_OPEN in text or PLACEHOLDER_CLOSE in text):
        raise TemplateError(
            "template error: a secret was transformed (filter, slice or iteration of text "
            "holding it); a secret can only be used whole"
        )
    return text


def render_string(source: str, context: dict[str, Any]) -> str:
    if not is_template(source):
        return source
    render = limits.current()
    try:
        template = _compile(source)
        text = _capped_output(template.root_render_func(template.new_context(context)))
    except TemplateError:
        raise
    except Exception as exc:  # undefined names, sandbox violations, type errors in user templates
        raise TemplateError(f"template error: {exc}") from exc
    return _reveal(text, render)


def render_params(value: Any, context: dict[str, Any], credential: bool = False) -> Any:
    """Render every string in `value`; secrets pass only where `credential` (see render_fields)."""
    render = limits.active()
    if render is None:  # a caller outside `rendering()`: one budget for this value
        with rendering():
            return render_params(value, context, credential)
    match value:
        case str():
            before = render.reveal
            render.reveal = credential
            try:
                return render_string(value, context)
            finally:
                render.reveal = before
        case dict():
            return {k: render_params(v, context, credential) for k, v in value.items()}
        case list():
            return [render_params(v, context, credential) for v in value]
        case _:
            return value


def render_fields(
    params: dict[str, Any], context: dict[str, Any], skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A node's top-level params rendered (`skip`: those the node evaluates itself)."""
    return {
        k: v if k in skip else render_params(v, context, k in CREDENTIAL_FIELDS)
        for k, v in params.items()
    }


@lru_cache(maxsize=1024)
def _compile_expression(expr: str) -> Any:
    try:
        return ENV.compile_expression(expr, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from exc


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    """An expression's value (never a secret's: secrets are opaque outside credential fields); any
    failure is a TemplateError. An Undefined result (an unknown name, or an attribute the sandbox
    hides such as `__class__`) fails here, not later when the caller takes its truth value, so nodes
    report it as a non-retryable error instead of crashing."""
    try:
        with rendering():
            value = _compile_expression(expr)(**context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            if isinstance(value, Secret):
                raise SecretMisuse(f"an expression cannot yield a secret; {OPAQUE}")
            limits.check_expanded("an expression's value", value)
            return value
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(f"expression error: {exc}") from exc
