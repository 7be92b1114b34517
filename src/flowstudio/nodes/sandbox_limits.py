"""Resource limits of the template sandbox: loop budget, deadline, string and output size.

`nodes/sandbox.py` builds the Jinja environment on top of this module. One `Render` (a context
variable, set by `templating.rendering`) carries the budget of one node's params: every loop
iteration and every item `range()` yields `tick()`s it (more than `LIMITS.max_iterations` or past
the node's deadline -> `TemplateLimitError`); so does every call the sandbox makes (a recursive
macro has no loop to count). Operations that can grow a value faster than a loop
(string/list `*`, `+`, `~`, `%`, `**`, `str.format`, padding and replacing filters and methods) check
the size they would produce BEFORE allocating it (`check_size`, `expanded_size` with an early exit),
so `('x' * 10**8)` is refused without allocating 100 MB. `configure(settings)` sets the limits from
TEMPLATE_MAX_ITERATIONS / TEMPLATE_MAX_STRING / TEMPLATE_MAX_OUTPUT once per process.
"""

from __future__ import annotations

import contextvars
import re
import string
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Limits:
    max_iterations: int = 100_000  # loop iterations + range() items + calls per node render
    max_range: int = 10_000  # items of one range()
    max_string: int = 1_000_000  # chars of any string/list a template builds
    max_output: int = 1_000_000  # chars of one rendered param
    max_int_bits: int = 100_000  # size of an int a template computes (** and *)


LIMITS = Limits()
DEADLINE_EVERY = 16  # ticks between two clock reads


class TemplateLimitError(Exception):
    """A template went over a limit; the message names the limit, never a value."""


@dataclass
class Render:
    """The state of one node's render: budget, deadline and the secrets it placed."""

    deadline: float | None = None
    iterations: int = 0
    reveal: bool = False  # rendering a credential field: secrets become placeholders
    placeholders: dict[str, str] = field(default_factory=dict)

    def tick(self, n: int = 1) -> None:
        self.iterations += n
        if self.iterations > LIMITS.max_iterations:
            raise TemplateLimitError(
                f"template exceeds {LIMITS.max_iterations} loop iterations and calls "
                "(TEMPLATE_MAX_ITERATIONS)"
            )
        if (
            self.deadline is not None
            and self.iterations % DEADLINE_EVERY == 0
            and time.monotonic() > self.deadline
        ):
            raise TemplateLimitError("template rendering exceeded the node's timeout")


_RENDER: contextvars.ContextVar[Render | None] = contextvars.ContextVar("render", default=None)


def current() -> Render:
    """The active render (`templating.rendering` sets one per node render; outside it, each call
    gets a fresh budget)."""
    r = _RENDER.get()
    return Render() if r is None else r


def active() -> Render | None:
    return _RENDER.get()


def set_render(r: Render | None) -> contextvars.Token[Render | None]:
    return _RENDER.set(r)


def reset_render(token: contextvars.Token[Render | None]) -> None:
    _RENDER.reset(token)


def configure(settings: Any) -> None:
    """Set the process's limits from `Settings` (missing fields keep the defaults)."""
    for name in ("max_iterations", "max_string", "max_output"):
        value = getattr(settings, f"template_{name}", None)
        if isinstance(value, int) and value > 0:
            setattr(LIMITS, name, value)


def too_big(what: str, size: int, limit: int | None = None) -> TemplateLimitError:
    cap = LIMITS.max_string if limit is None else limit
    return TemplateLimitError(f"{what} would be {size} long, over the limit of {cap}")


def check_size(what: str, size: int) -> None:
    if size > LIMITS.max_string:
        raise too_big(what, size)


def expanded_size(value: Any, cap: int | None = None) -> int:
    """Roughly how many chars `str(value)` makes, stopping as soon as it passes `cap`."""
    limit = LIMITS.max_string if cap is None else cap
    total = 0
    stack = [value]
    seen = 0
    while stack:
        v = stack.pop()
        seen += 1
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, dict):
            total += 2 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 * len(v)
            stack.extend(v)
        else:
            total += 8
        if total > limit or seen > limit:
            return max(total, seen)
    return total


def check_expanded(what: str, value: Any) -> None:
    size = expanded_size(value)
    if size > LIMITS.max_string:
        raise too_big(what, size)


def limited_range(*args: int) -> Iterator[int]:
    """`range()` for templates: at most `max_range` items, each one ticks the budget."""
    rng = range(*args)
    if len(rng) > LIMITS.max_range:
        raise TemplateLimitError(
            f"range() of {len(rng)} items is over the limit of {LIMITS.max_range}"
        )
    return limited_iter(rng)


def limited_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    render = current()
    for item in iterable:
        render.tick()
        yield item


def _len(v: Any) -> int:
    return len(v) if isinstance(v, (str, list, tuple)) else 0


def _check_int(what: str, bits: int) -> None:
    if bits > LIMITS.max_int_bits:
        raise TemplateLimitError(
            f"{what} would make a {bits}-bit number, over {LIMITS.max_int_bits} bits"
        )


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBERS = re.compile(r"\d+")


def check_percent_format(fmt: str) -> None:
    """`fmt % args`: refuse `*` widths and widths/precisions over the string limit."""
    for m in _PERCENT_SPEC.finditer(fmt):
        for part in m.groups():
            if part == "*":
                raise TemplateLimitError("a '*' width in a % format is not allowed in templates")
            if part and int(part) > LIMITS.max_string:
                raise too_big("a % format width", int(part))


def check_brace_format(fmt: str) -> None:
    """`fmt.format(...)`: refuse nested fields in a spec and widths over the string limit."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in parsed:
        if not spec:
            continue
        if "{" in spec:
            raise TemplateLimitError("nested format fields are not allowed in templates")
        for n in _NUMBERS.findall(spec):
            if int(n) > LIMITS.max_string:
                raise too_big("a format width", int(n))


def binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left <operator> right` before it runs when its result would be over a limit."""
    match operator:
        case "*":
            if isinstance(left, int) and isinstance(right, (str, list, tuple)):
                left, right = right, left
            if isinstance(left, (str, list, tuple)) and isinstance(right, int):
                check_size("a repeated string or list", len(left) * max(right, 0))
                if isinstance(left, (list, tuple)):
                    check_size("a repeated list", expanded_size(left) * max(right, 0))
            elif isinstance(left, int) and isinstance(right, int):
                _check_int("a product", left.bit_length() + right.bit_length())
        case "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                check_size("a concatenation", _len(left) + _len(right))
        case "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                _check_int("a power", max(left.bit_length(), 1) * right)
        case "%":
            if isinstance(left, str):
                check_percent_format(left)
                check_expanded("a % format's arguments", right)
        case _:
            pass


def method_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Pre-checks for the str methods that can grow a string past the limit in one call."""
    self = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    for a in (*args, *kwargs.values()):
        check_expanded(f"an argument of {name}()", a)
    if not isinstance(self, str):
        return
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and a > LIMITS.max_string:
            raise too_big(f"an argument of str.{name}()", a)
    match name:
        case "replace" if len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            count = len(self) + 1 if not old else self.count(old)
            check_size("str.replace()", len(self) + count * max(len(new) - len(old), 0))
        case "join" if args:
            items = list(args[0]) if not isinstance(args[0], (list, tuple)) else args[0]
            size = sum(expanded_size(i) for i in items) + len(self) * len(items)
            check_size("str.join()", size)
        case "expandtabs":
            width = int(args[0]) if args else 8
            check_size("str.expandtabs()", len(self) + self.count("\t") * width)
        case _:
            pass


def check_result(what: str, value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > LIMITS.max_string:
        raise too_big(what, len(value))
    return value
