"""Sandboxed templating of node params: `{{ node_id.field }}`, `{{ inputs.name }}`, `{{ secrets.NAME }}`.

One Jinja2 `ImmutableSandboxedEnvironment` (no attribute access to internals, no mutation of context
objects). `render_params(params, context)` renders every string inside params (recursively);
`referenced_names(params)` lists the top-level names the templates use, so the worker loads only those
upstream outputs and the validator can refuse references to nodes that do not exist.
`referenced_secrets(params)` lists the NAMEs used as `secrets.NAME` / `secrets["NAME"]`, so the worker
decrypts only those (`worker/context.py`).
`evaluate(expression, context)` evaluates a safe boolean/value expression for `condition`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
RESERVED = frozenset({"inputs", "input", "secrets", "run", "item", "args", "tool_call", "agent"})


class TemplateError(ValueError):
    pass


def _is_template(s: str) -> bool:
    return "{{" in s or "{%" in s


@lru_cache(maxsize=2048)
def _compile(source: str) -> Any:
    try:
        return ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message} (line {exc.lineno})") from exc


def _walk_strings(value: Any) -> list[str]:
    match value:
        case str():
            return [value] if _is_template(value) else []
        case dict():
            return [s for v in value.values() for s in _walk_strings(v)]
        case list():
            return [s for v in value for s in _walk_strings(v)]
        case _:
            return []


def referenced_names(params: Any, expressions: list[str] | None = None) -> set[str]:
    names: set[str] = set()
    for source in _walk_strings(params):
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
    sources = _walk_strings(params) + ["{{ " + e + " }}" for e in expressions or []]
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


def render_string(source: str, context: dict[str, Any]) -> str:
    if not _is_template(source):
        return source
    try:
        return str(_compile(source).render(context))
    except TemplateError:
        raise
    except Exception as exc:  # undefined names, sandbox violations, type errors in user templates
        raise TemplateError(f"template error: {exc}") from exc


def render_params(value: Any, context: dict[str, Any]) -> Any:
    match value:
        case str():
            return render_string(value, context)
        case dict():
            return {k: render_params(v, context) for k, v in value.items()}
        case list():
            return [render_params(v, context) for v in value]
        case _:
            return value


@lru_cache(maxsize=1024)
def _compile_expression(expr: str) -> Any:
    try:
        return ENV.compile_expression(expr, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from exc


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    """The expression's value; any failure is a TemplateError. An Undefined result (an unknown name,
    or an attribute the sandbox hides such as `__class__`) fails here, not later when the caller
    takes its truth value, so nodes report it as a non-retryable error instead of crashing."""
    try:
        value = _compile_expression(expr)(**context)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        return value
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(f"expression error: {exc}") from exc
