"""I/O nodes: `input` (the run's inputs), `output` (becomes the run's outputs), `noop` (passes through).

Each is one `register(NodeSpec(...))` with an async execute that only reshapes data.
"""

from __future__ import annotations

import msgspec

from flowstudio.nodes.registry import Done, NodeContext, NodeSpec, Port, register


class NoParams(msgspec.Struct, kw_only=True):
    pass


async def run_input(ctx: NodeContext, params: NoParams) -> Done:
    return Done(dict(ctx.inputs))


async def run_output(ctx: NodeContext, params: NoParams) -> Done:
    return Done(ctx.input)


async def run_noop(ctx: NodeContext, params: NoParams) -> Done:
    return Done(ctx.input)


register(
    NodeSpec(
        "input",
        "Input",
        "io",
        "Starts the flow; outputs the run's inputs object.",
        NoParams,
        run_input,
        inputs=(),
    )
)
register(
    NodeSpec(
        "output",
        "Output",
        "io",
        "Its input becomes the run's outputs.",
        NoParams,
        run_output,
        outputs=(),
    )
)
register(
    NodeSpec(
        "noop",
        "No-op",
        "io",
        "Passes its input through unchanged.",
        NoParams,
        run_noop,
        outputs=(Port("out"),),
    )
)
