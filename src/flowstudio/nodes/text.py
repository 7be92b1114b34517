"""Text nodes: `template` (sandboxed Jinja2 over inputs and upstream outputs) and `hash` (CPU-bound).

`template`'s param is rendered by the worker before execute (like every param), so execute only wraps
it. `hash` is declared with `compute=` so the worker runs it in its spawn process pool, off the event
loop; it is also the engine's proof that CPU-bound nodes work on every platform.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from flowstudio.nodes.bounds import HashRounds
from flowstudio.nodes.registry import Done, NodeContext, NodeSpec, register


class TemplateParams(msgspec.Struct, kw_only=True):
    template: str


class HashParams(msgspec.Struct, kw_only=True):
    text: str
    algorithm: str = "sha256"
    rounds: HashRounds = 1


async def run_template(ctx: NodeContext, params: TemplateParams) -> Done:
    return Done({"text": params.template})


def compute_hash(params: dict[str, Any], _input: Any) -> dict[str, Any]:
    algorithm = params.get("algorithm", "sha256")
    if algorithm not in hashlib.algorithms_guaranteed:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    data = str(params["text"]).encode()
    for _ in range(max(1, int(params.get("rounds", 1)))):
        data = hashlib.new(algorithm, data).digest()
    return {"digest": data.hex(), "algorithm": algorithm}


register(
    NodeSpec(
        "template",
        "Template",
        "text",
        "Renders a sandboxed template: {{ inputs.x }}, {{ node_id.field }}.",
        TemplateParams,
        run_template,
    )
)
register(
    NodeSpec(
        "hash",
        "Hash",
        "text",
        "Hashes text (CPU-bound: runs in a worker process).",
        HashParams,
        compute=compute_hash,
    )
)
