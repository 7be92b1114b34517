"""The Jinja sandbox every template and expression of a flow runs in: limits and opaque secrets.

`LimitedSandbox` is Jinja's `ImmutableSandboxedEnvironment` plus:
- resource limits (`nodes/sandbox_limits.py`): every `{% for %}` iterates through `limited_iter`
  (`_generate` wraps the loop's iterable) and every call (macros too) ticks the same budget,
  `range()` is capped, `~` / `*` / `+` / `%` /
  `**`, `str.format`, the growing str methods and every filter check the size they would produce
  before producing it, and no `lipsum`;
- opaque secrets: `{{ secrets.NAME }}` is a `Secret`, not a string. Any filter, test of equality or
  order, slicing, item or attribute access, iteration, length, truth value or method on it raises
  `SecretMisuse` (non-retryable; the message says why, never the value). Its only conversion is
  `str()`, and only while `Render.reveal` is set (a credential field being rendered, see
  `templating.CREDENTIAL_FIELDS`): it then returns a random per-render placeholder, which
  `templating.render_string` swaps for the value after Jinja is done. The value itself never enters
  the Jinja runtime, so a concatenation transformed afterwards (`(secrets.X ~ '')|reverse`) leaves a
  broken placeholder that is refused, not a reversed secret.
"""

from __future__ import annotations

import functools
import secrets as random_tokens
from collections.abc import Callable
from typing import Any, NoReturn

from jinja2 import Environment, StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowstudio.nodes import sandbox_limits as limits
from flowstudio.nodes.sandbox_limits import TemplateLimitError

PLACEHOLDER_OPEN = "\ue000"
PLACEHOLDER_CLOSE = "\ue001"
OPAQUE = (
    "a secret is opaque: use it whole in a credential field (api_key, auth, headers), "
    "optionally joined to text with ~ or +"
)


class SecretMisuse(Exception):
    """A template did something with a secret other than placing it whole in a credential field."""


def _misuse(what: str) -> NoReturn:
    raise SecretMisuse(f"{what} is not allowed on a secret; {OPAQUE}")


class Secret:
    """One secret's value inside the sandbox. Every operation but `str()` in a credential field
    raises; the value sits in a name-mangled slot the sandbox cannot reach (underscore names are
    unsafe attributes, and `getattr` below refuses everything on a Secret anyway)."""

    __slots__ = ("__value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.__value = value

    def __str__(self) -> str:
        render = limits.current()
        if not render.reveal:
            raise SecretMisuse(f"secret {self.name!r} used outside a credential field; {OPAQUE}")
        for placeholder, value in render.placeholders.items():
            if value is self.__value:
                return placeholder
        placeholder = (
            f"{PLACEHOLDER_OPEN}{random_tokens.token_hex(8)}{len(render.placeholders)}"
            f"{PLACEHOLDER_CLOSE}"
        )
        render.placeholders[placeholder] = self.__value
        return placeholder

    def __repr__(self) -> str:
        return f"<secret {self.name}>"

    def __add__(self, other: object) -> str:
        if isinstance(other, (str, Secret)):
            return str(self) + str(other)
        _misuse("+ with a non-string")

    def __radd__(self, other: object) -> str:
        if isinstance(other, str):
            return other + str(self)
        _misuse("+ with a non-string")

    def __format__(self, spec: str) -> str:
        if spec:
            _misuse("a format spec")
        return str(self)

    def __iter__(self) -> NoReturn:
        _misuse("iteration")

    def __reversed__(self) -> NoReturn:
        _misuse("reversing")

    def __len__(self) -> NoReturn:
        _misuse("length")

    def __getitem__(self, key: object) -> NoReturn:
        _misuse("indexing or slicing")

    def __contains__(self, item: object) -> NoReturn:
        _misuse("'in'")

    def __bool__(self) -> NoReturn:
        _misuse("a truth test")

    def __eq__(self, other: object) -> NoReturn:  # type: ignore[override]
        _misuse("comparison")

    def __ne__(self, other: object) -> NoReturn:  # type: ignore[override]
        _misuse("comparison")

    def __lt__(self, other: object) -> NoReturn:
        _misuse("comparison")

    __le__ = __gt__ = __ge__ = __lt__

    def __hash__(self) -> NoReturn:  # type: ignore[override]
        _misuse("hashing")

    def __mul__(self, other: object) -> NoReturn:
        _misuse("repetition")

    __rmul__ = __mul__

    def __mod__(self, other: object) -> NoReturn:
        _misuse("% formatting of the secret itself")

    def __int__(self) -> NoReturn:
        _misuse("number conversion")

    __float__ = __index__ = __int__


def value_of(secret: Secret) -> str:
    """The value (for Python code outside the sandbox: tests, the log filter)."""
    return str(secret._Secret__value)  # type: ignore[attr-defined]  # name-mangled on purpose


def _holds_secret(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return any(isinstance(a, Secret) for a in (*args, *kwargs.values()))


def _limited_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _holds_secret(args, kwargs):
            _misuse(f"the filter '{name}'")
        i = _value_index(args)
        for a in (*args[i:], *kwargs.values()):
            limits.check_expanded(f"an argument of the filter '{name}'", a)
        for a in (*args[i + 1 :], *kwargs.values()):
            if isinstance(a, int) and a > limits.LIMITS.max_string:
                raise limits.too_big(f"an argument of the filter '{name}'", a)
        pre = _PRE_CHECKS.get(name)
        if pre is not None:
            args = pre(args, kwargs)
        return limits.check_result(f"the filter '{name}'", fn(*args, **kwargs))

    wrapper.__name__ = name
    return wrapper


def _value_index(args: tuple[Any, ...]) -> int:
    """Filters that take an eval context / context / environment get it before the value."""
    return 1 if args and isinstance(args[0], (EvalContext, Context, Environment)) else 0


def _pre_join(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    i = _value_index(args)
    items = list(limits.limited_iter(args[i]))
    sep = kwargs.get("d", args[i + 1] if len(args) > i + 1 else "")
    size = sum(limits.expanded_size(v) for v in items) + len(str(sep)) * len(items)
    limits.check_size("the filter 'join'", size)
    return (*args[:i], items, *args[i + 1 :])


def _pre_replace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    i = _value_index(args)
    s, old, new = str(args[i]), str(args[i + 1]), str(args[i + 2])
    count = len(s) + 1 if not old else s.count(old)
    limits.check_size("the filter 'replace'", len(s) + count * max(len(new) - len(old), 0))
    return args


def _pre_pad(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    s = str(args[0])
    width = kwargs.get("width", args[1] if len(args) > 1 else 80)
    width = len(width) if isinstance(width, str) else int(width)
    limits.check_size("a padded string", len(s) + (s.count("\n") + 1) * max(width, 0))
    return args


def _pre_format(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    limits.check_percent_format(str(args[0]))
    return args


def _pre_sum(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    start = kwargs.get("start", args[_value_index(args) + 2] if len(args) > 2 else 0)
    if not isinstance(start, (int, float)):
        raise TemplateLimitError(
            "sum() is limited to numbers in templates (join lists or strings instead)"
        )
    return args


_PRE_CHECKS: dict[str, Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]] = {
    "join": _pre_join,
    "replace": _pre_replace,
    "center": _pre_pad,
    "indent": _pre_pad,
    "format": _pre_format,
    "sum": _pre_sum,
}


def _is_limited(expr: nodes.Node) -> bool:
    return (
        isinstance(expr, nodes.Call)
        and isinstance(expr.node, nodes.EnvironmentAttribute)
        and expr.node.name == "limited_iter"
    )


class LimitedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.limited_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, finalize=_finalize)
        self.globals.pop("lipsum", None)
        self.globals["range"] = limits.limited_range
        self.filters = {k: _limited_filter(k, f) for k, f in self.filters.items()}
        self.limited_iter = limits.limited_iter

    @staticmethod
    def limited_concat(parts: tuple[Any, ...]) -> str:
        strs = [str(p) for p in parts]
        limits.check_size("a ~ concatenation", sum(len(s) for s in strs))
        return "".join(strs)

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        for loop in source.find_all(nodes.For):  # every iteration ticks the budget
            if not _is_limited(loop.iter):
                loop.iter = nodes.Call(
                    nodes.EnvironmentAttribute("limited_iter"),
                    [loop.iter],
                    [],
                    None,
                    None,
                    lineno=loop.lineno,
                )
        return super()._generate(source, *args, **kwargs)  # type: ignore[misc]

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator != "+" and (isinstance(left, Secret) or isinstance(right, Secret)):
            _misuse(f"the operator {operator}")
        limits.binop(operator, left, right)
        return limits.check_result(
            f"the operator {operator}", super().call_binop(context, operator, left, right)
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Secret):
            _misuse(f"the attribute or method .{attribute}")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Secret):
            _misuse("indexing or slicing")
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is limits.limited_iter:  # the loop wrapper `_generate` put in
            return limits.limited_iter(*args)
        if isinstance(__obj, Secret):
            _misuse("calling")
        limits.current().tick()  # every call counts: a recursive macro has no loop to count
        limits.method_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return limits.check_result(f"{getattr(__obj, '__name__', 'a call')}()", result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        fmt = super().wrap_str_format(value)
        owner = getattr(value, "__self__", None)
        if fmt is not None and isinstance(owner, str):
            limits.check_brace_format(owner)
        return fmt


def _finalize(value: Any) -> Any:
    """Every `{{ }}` output: bounded in size (a Secret converts itself through `str()`)."""
    if not isinstance(value, (str, int, float, Secret)) and value is not None:
        limits.check_expanded("an output value", value)
    return value


__all__ = ["LimitedSandbox", "Secret", "SecretMisuse", "TemplateLimitError", "value_of"]
