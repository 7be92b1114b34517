"""Run ONE node in-process, the way a worker executes a claimed step, without a worker or a run.

`await run_node("llm_chat", params, inputs, upstream=..., feeds_output=...)` builds what the worker
builds for a claimed step: a pinned graph (input -> the node [-> output]), a `ClaimedStep`, the
template context of `worker/context.build_context` (`inputs`, `input`, `run`, upstream outputs by node
id) and calls the worker's own `worker.execute.execute_node` (params rendered and decoded, the node's
timeout, the node's real `execute`, failures classified, secrets masked) with the worker's egress
guard (loopback allowed, like the process tiers: the fake OpenAI server of
tests/support/fake_openai.py is a `base_url` away). Its ephemeral notifications (LLM tokens) go
through the worker's `notifier` into a `TokenTap` instead of pg_notify; a node that needs the database
for anything else (chat memory, vectors) gets a real pool with `pool=` (its tokens then go to
pg_notify, as in a worker). Secrets are not loaded (no
run owner). Provider limits are off unless `settings=` turns them on (they need the database). Returns a `NodeRun`: the outcome (`Done`/`Wait`/... or `Failure`) and the tokens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from flowstudio.egress import Egress, EgressPolicy
from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.flows.graph import FlowGraph
from flowstudio.flows.model import decode_definition
from flowstudio.nodes import registry
from flowstudio.nodes.registry import Done
from flowstudio.worker.execute import Failure, Outcome, ProcessPool, execute_node
from tests.support.flows import edge, flow_def, node
from tests.support.templatedb import settings_for


@dataclass
class TokenTap:
    """Stands in for the worker's pool in `notifier`: records each pg_notify (channel, payload); the
    LLM node's "is this run a batch item?" read finds no row."""

    notified: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[TokenTap]:
        yield self

    async def execute(self, sql: str, params: tuple[str, ...]) -> TokenTap:
        if "batch_id IS NOT NULL" in sql:  # llm.should_stream asks: no run row, so not a batch item
            return self
        assert "pg_notify" in sql, f"this node needs a database (pass pool=): {sql[:60]}"
        channel, payload = params
        self.notified.append((channel, json.loads(payload)))
        return self

    async def fetchone(self) -> None:
        return None


@dataclass(frozen=True)
class NodeRun:
    outcome: Outcome
    step: ClaimedStep
    tokens: list[dict[str, Any]]  # the payloads the node emitted, in order

    @property
    def output(self) -> Any:
        assert isinstance(self.outcome, Done), f"the node did not finish: {self.outcome}"
        return self.outcome.output

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.outcome, Failure), f"the node did not fail: {self.outcome}"
        return self.outcome.error

    @property
    def streamed_text(self) -> str:
        return "".join(t["text"] for t in sorted(self.tokens, key=lambda t: t["seq"]))


async def run_node(
    node_type: str,
    params: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    *,
    upstream: dict[str, Any] | None = None,
    port_input: Any = None,
    data: dict[str, Any] | None = None,
    feeds_output: bool = False,
    node_id: str = "n",
    pool: Any = None,
    settings: Any = None,
) -> NodeRun:
    """`upstream`: outputs of other nodes by id (template names, like `{{ prev.text }}`);
    `port_input`: the node's `input` (default: the run inputs, as for a node fed by `input`);
    `feeds_output`: an edge leads from the node into an `output` node (an LLM then streams);
    `data`: node-level fields (`timeout_s`, `retry`)."""
    spec = registry.get(node_type)
    assert spec is not None, f"no node type {node_type!r}"
    inputs = inputs or {}
    target = node(node_id, node_type, data)
    target["data"]["params"] = dict(params)  # (a param may be called `data`: json_transform's is)
    nodes = [node("in", "input"), target]
    edges = [edge("in", node_id)]
    if feeds_output:
        nodes.append(node("out", "output"))
        edges.append(edge(node_id, "out"))
    graph = FlowGraph.build(decode_definition(flow_def(nodes, edges)))
    step = ClaimedStep(
        step_id=1,
        run_id=str(uuid.uuid4()),
        node_id=node_id,
        item_index=0,
        node_type=node_type,
        attempt=1,
        max_attempts=1,
        flow_id=str(uuid.uuid4()),
        flow_version=1,
        inputs=inputs,
        owner_id="",
    )
    given = inputs if port_input is None else port_input
    context = {
        **(upstream or {}),
        "inputs": inputs,
        "input": given,
        "run": {"id": step.run_id, "flow_id": step.flow_id, "attempt": step.attempt},
    }
    # Cluster-wide provider limits live in PostgreSQL (permits, parking): off here, as with
    # PROVIDER_LIMITS=off (a 429 is retried inside the step); the process tier tests them.
    settings = settings or msgspec.structs.replace(
        settings_for("postgresql://unused.invalid/none"), provider_limits=False
    )
    tap = TokenTap()
    http = Egress(EgressPolicy.from_settings(settings))
    procpool = ProcessPool(1)
    try:
        outcome = await execute_node(
            step,
            graph,
            spec,
            port_input=given,
            context=context,
            settings=settings,
            http=http,
            procpool=procpool,
            pool=pool if pool is not None else tap,
        )
    finally:
        await http.aclose()
        procpool.shutdown()
    return NodeRun(outcome, step, [payload for _, payload in tap.notified])
