"""`{{ secrets.NAME }}` for a step: load and decrypt only the referenced secrets, and mask their values.

`build_context` (worker/context.py) calls `load_step_secrets(conn, step, names, secret_key)` with
`names = step_secret_names(step, graph, spec)`: the node's params and expressions
(`templating.referenced_secrets`, cached per pinned version) plus the run's tweaks for the node;
one query (`store.secrets.load_run_secrets`) fetches the FLOW owner's rows — all of them when the
run's owner is the flow's owner, else only the names the owner bound to the flow (and only while
the runner may still run it): a runner's own secrets never reach a template they do not own.
`auth.secrets.SecretBox` decrypts them; the template sees each as an opaque `sandbox.Secret`, and
the values are registered with the log filter (`runtime_logging`) while the step is in flight. It
returns the `SecretValues` put in the template context and the problems (missing / undecryptable /
no SECRET_KEY) per name, which `render_node_params` turns into a non-retryable step failure naming
the secret (never its value).
`mask_outcome(outcome, context)` replaces any secret value in the node's output or error with `***`;
`@masking_secrets` applies it to `execute_node` (worker/execute.py), so no value the worker commits
(step_io, steps.error, run_events) contains one, and masks the step's values in every log record
while it runs (`secretmask.in_flight`). Masking is the last line, not the boundary.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, NoReturn, ParamSpec, TypeVar

import psycopg

from flowstudio.auth.secrets import SecretBox, SecretDecryptError, SecretKeyMissing
from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.flows.graph import FlowGraph
from flowstudio.nodes.registry import NodeSpec
from flowstudio.nodes.sandbox import OPAQUE, Secret, SecretMisuse
from flowstudio.nodes.templating import TemplateError, referenced_secrets
from flowstudio.secretmask import in_flight, mask_text, masked_secrets
from flowstudio.store.secrets import load_run_secrets

PROBLEMS_KEY = "secrets:problems"  # context keys that are not template identifiers
VALUES_KEY = "secrets:values"
P = ParamSpec("P")
R = TypeVar("R")


class SecretValues:
    """The template's `secrets` object. It has no public attributes, so the sandbox falls back to item
    lookup for every NAME (even `items` or `get`), which gives an opaque `sandbox.Secret`; it cannot
    be iterated, and its repr never shows a value."""

    __slots__ = ("__values",)

    def __init__(self, values: dict[str, Secret]) -> None:
        self.__values = values

    def __getitem__(self, name: str) -> Secret:
        return self.__values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.__values

    def __iter__(self) -> NoReturn:
        raise SecretMisuse(f"the secrets cannot be listed; {OPAQUE}")

    def __repr__(self) -> str:
        return f"<secrets: {len(self.__values)} loaded>"

    __str__ = __repr__


def secret_names_in(params: Any, spec: NodeSpec) -> set[str]:
    if not isinstance(params, dict):
        return set()
    try:
        return referenced_secrets(
            {k: v for k, v in params.items() if k not in spec.expressions},
            [str(params[k]) for k in spec.expressions if k in params],
        )
    except TemplateError:
        return set()  # rendering reports the syntax error as a non-retryable failure


@lru_cache(maxsize=4096)
def _node_secret_names(graph: FlowGraph, node_id: str, spec: NodeSpec) -> frozenset[str]:
    return frozenset(secret_names_in(graph.nodes[node_id].data.params, spec))


def step_secret_names(step: ClaimedStep, graph: FlowGraph, spec: NodeSpec) -> set[str]:
    names = set(_node_secret_names(graph, step.node_id, spec))
    tweaks = getattr(step, "tweaks", None) or {}
    return names | secret_names_in(tweaks.get(step.node_id), spec)


async def load_step_secrets(
    conn: psycopg.AsyncConnection[Any] | None,
    step: ClaimedStep,
    names: set[str],
    secret_key: str | None,
) -> dict[str, Any]:
    """The context entries for the secrets `names` (`step_secret_names`): `secrets`, and (only
    when used) values and problems; `conn` is needed only when `names` is not empty."""
    if not names:
        return {"secrets": SecretValues({})}
    assert conn is not None, "secrets are read from the database"
    key = os.environ.get("SECRET_KEY", "") if secret_key is None else secret_key
    problems: dict[str, str] = {}
    values: dict[str, str] = {}
    try:
        box: SecretBox | None = SecretBox.from_secret_key(key)
    except SecretKeyMissing:
        box = None
    rows = {
        r["name"]: r
        for r in await load_run_secrets(conn, step.flow_id, step.owner_id, sorted(names))
    }
    for name in sorted(names):
        row = rows.get(name)
        if row is None:
            problems[name] = f"secret {name!r} is not defined for the flow's owner"
        elif not row["allowed"]:
            problems[name] = (
                f"secret {name!r} is not bound to this flow by its owner (a flow run by another"
                " user than its owner uses only the owner's secrets bound to it)"
            )
        elif box is None:
            problems[name] = f"SECRET_KEY not configured on the worker: cannot read secret {name!r}"
        else:
            try:
                values[name] = box.decrypt(row["owner_id"], name, row["ciphertext"], row["nonce"])
            except SecretDecryptError as exc:
                problems[name] = str(exc)
    return {
        "secrets": SecretValues({n: Secret(n, v) for n, v in values.items()}),
        VALUES_KEY: tuple(sorted(values.values(), key=len, reverse=True)),
        PROBLEMS_KEY: problems,
    }


def secret_problem(context: dict[str, Any]) -> str | None:
    problems: dict[str, str] = context.get(PROBLEMS_KEY) or {}
    return "; ".join(problems[n] for n in sorted(problems)) or None


def _mask(value: Any, secrets: tuple[str, ...]) -> Any:
    match value:
        case str():
            return mask_text(value, secrets)
        case dict():
            return {_mask(k, secrets): _mask(v, secrets) for k, v in value.items()}
        case list() | tuple():
            return [_mask(v, secrets) for v in value]
        case _:
            return value


def mask_outcome(outcome: Any, context: dict[str, Any]) -> Any:
    """Replace secret values in a Done/Wait output or a Failure error; free when no secret is used."""
    secrets = masked_secrets(context.get(VALUES_KEY, ()))
    if not secrets or not dataclasses.is_dataclass(outcome) or isinstance(outcome, type):
        return outcome
    field = "error" if hasattr(outcome, "error") else "output"
    if not hasattr(outcome, field):  # a Park carries no content
        return outcome
    return dataclasses.replace(outcome, **{field: _mask(getattr(outcome, field), secrets)})


def masking_secrets(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate a node executor whose keyword argument `context` is the template context."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        context = kwargs.get("context")
        if not isinstance(context, dict):
            return await fn(*args, **kwargs)
        with in_flight(context.get(VALUES_KEY, ())):  # log records of the step masked too
            outcome = await fn(*args, **kwargs)
        return mask_outcome(outcome, context)

    return wrapper
