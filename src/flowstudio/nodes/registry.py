"""The node contract and registry: each node type is a params Struct + ports + an execute function.

Node families (`io.py`, `logic.py`, `text.py`, `http.py`) call `register(NodeSpec(...))` at import;
`load_all()` imports them. The worker looks a type up with `get(type)` and calls `spec.execute(ctx,
params)` (or, for `cpu_bound` nodes, `spec.compute(params, input)` in a spawn process pool). The API's
node catalogue is `catalogue()`: params JSON Schema from `msgspec.json.schema`, ports, defaults.
Execute returns `Done(output, branch)` or `Wait(seconds, output)` or raises `NodeError`.
A spec whose ports depend on its params (the router) sets `dynamic_outputs`; the validator asks
`outputs_for(params)`. `NodeContext.db`/`owner_id` serve nodes that keep per-user data in PostgreSQL,
`NodeContext.emit` sends ephemeral notifications (LLM tokens) without touching the event log.
"""

from __future__ import annotations

import builtins
import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

log = logging.getLogger(__name__)


class NodeError(Exception):
    """A node failed. `retryable=False` skips the remaining attempts (bad params, 4xx, ...)."""

    def __init__(self, message: str, *, retryable: bool = True, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.details = details


@dataclass(frozen=True)
class Done:
    output: Any
    branch: str | None = None


@dataclass(frozen=True)
class Wait:
    """Park the step in `waiting`: until `seconds` pass (a durable timer) or, if None, a signal."""

    seconds: float | None
    output: Any = None
    accepts_signal: bool = False  # a signal (API /signal) completes the wait early


@dataclass(frozen=True)
class Expand:
    """Fan out: run the map's body once per item (each item its own durable step)."""

    items: list[Any]


@dataclass(frozen=True)
class StartChild:
    """Run another flow as a durable child run; the step completes with the child's outputs."""

    flow_id: str
    version: int | None
    inputs: dict[str, Any]


@dataclass(frozen=True)
class CallTools:
    """An agent turn asked for tools: run each call as its own durable step, then the next turn."""

    calls: list[dict[str, Any]]
    state: Any


@dataclass
class NodeContext:
    run_id: str
    step_id: int
    node_id: str
    item_index: int
    attempt: int
    inputs: Mapping[str, Any]
    input: Any
    settings: Any
    http: Any = None  # shared httpx.AsyncClient of the worker
    context: dict[str, Any] = field(default_factory=dict)  # template context (upstream outputs)
    owner_id: str = ""  # the run owner: scope of per-user data (chat memory, vector collections)
    db: Any = (
        None  # the worker's psycopg AsyncConnectionPool, for nodes that keep data in PostgreSQL
    )
    # ephemeral notifications (e.g. LLM tokens): emit(channel, payload) -> pg_notify, not the event log
    emit: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
    feeds_output: bool = False  # an edge leads from this node straight into an `output` node
    in_batch: bool | None = None  # the run is a batch item (None: unknown, nodes may look it up)

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.node_id}:{self.item_index}"


@dataclass(frozen=True)
class Port:
    name: str
    type: str = "any"


NodeResult = Done | Wait | Expand | StartChild | CallTools  # what a node's `execute` returns
Execute = Callable[[NodeContext, Any], Awaitable[NodeResult]]


@dataclass(frozen=True, eq=False)
class NodeSpec:
    type: str
    title: str
    category: str
    description: str
    params: builtins.type[msgspec.Struct]  # `builtins.`: the field `type` shadows the builtin here
    execute: Execute | None = None
    compute: Callable[[dict[str, Any], Any], Any] | None = None  # cpu_bound: runs in a process
    inputs: tuple[Port, ...] = (Port("in"),)
    outputs: tuple[Port, ...] = (Port("out"),)
    expressions: tuple[str, ...] = ()  # params evaluated as expressions, not rendered as templates
    deferred: tuple[str, ...] = ()  # params rendered later by the engine (a map's per-item body)
    default_timeout_s: float = 300.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_bound(self) -> bool:
        return self.compute is not None

    def decode_params(self, raw: dict[str, Any]) -> Any:
        return msgspec.convert(raw, self.params)

    # ports that depend on the node's params (a router's routes); None: `outputs` is the list
    dynamic_outputs: Callable[[dict[str, Any]], tuple[Port, ...]] | None = None

    def outputs_for(self, params: dict[str, Any]) -> tuple[Port, ...]:
        if self.dynamic_outputs is None:
            return self.outputs
        try:
            return self.dynamic_outputs(params)
        except (TypeError, ValueError, KeyError, AttributeError):
            return self.outputs  # bad params are reported by the params check


_REGISTRY: dict[str, NodeSpec] = {}
FAMILIES = ("io", "logic", "text", "http", "flowctl", "llm", "rag", "data", "code", "agent")


def register(spec: NodeSpec) -> NodeSpec:
    if spec.type in _REGISTRY:
        raise ValueError(f"node type {spec.type!r} registered twice")
    if (spec.execute is None) == (spec.compute is None):
        raise ValueError(f"node type {spec.type!r} needs exactly one of execute/compute")
    _REGISTRY[spec.type] = spec
    return spec


_LOADED: list[bool] = []


def load_all() -> dict[str, NodeSpec]:
    """Import every node family once (later calls are a list check: `get` is on the hot path)."""
    if not _LOADED:
        for family in FAMILIES:
            name = f"flowstudio.nodes.{family}"
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    raise
                log.error("node family %r is listed in FAMILIES but has no module", family)
        _LOADED.append(True)
    return _REGISTRY


def get(node_type: str) -> NodeSpec | None:
    load_all()
    return _REGISTRY.get(node_type)


def catalogue() -> list[dict[str, Any]]:
    items = []
    for spec in sorted(load_all().values(), key=lambda s: (s.category, s.type)):
        items.append(
            {
                "type": spec.type,
                "title": spec.title,
                "category": spec.category,
                "description": spec.description,
                "params_schema": msgspec.json.schema(spec.params),
                "inputs": [{"name": p.name, "type": p.type} for p in spec.inputs],
                "outputs": [{"name": p.name, "type": p.type} for p in spec.outputs],
                "cpu_bound": spec.cpu_bound,
                # the router: its output ports are params.routes[].name + params.default
                "dynamic_outputs": spec.dynamic_outputs is not None,
            }
        )
    return items
