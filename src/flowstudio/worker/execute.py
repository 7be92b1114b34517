"""Execute one claimed node: render params, run it (in-loop or in the spawn process pool), classify.

`execute_node(step, graph, spec, ...)` returns an `Outcome`: `Done`/`Wait` from the node, a `Park`
(no provider capacity, or a 429: `providers/permits.py`), or a failure with `retryable`. It applies
the per-node timeout (`data.timeout_s` or the type's default), also to rendering the params:
templates with statements, `range` or a large size render in a thread whose loop budget stops at the same deadline (`context.render_off_loop`), so a heavy template never holds
the event loop (other steps, heartbeats) and never outlives its node's timeout. It never
touches the database: the worker loop (`worker/worker.py`) commits whatever it returns, after
`@masking_secrets` replaced any secret value in it with `***` (`worker/secret_values.py`). Nodes that
keep data in PostgreSQL get the worker's pool as `ctx.db`; `ctx.emit` (`notifier`) sends ephemeral
notifications such as LLM tokens (pg_notify, secrets masked), never step state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio

from flowstudio.egress import EgressError
from flowstudio.engine.checkpoint import ClaimedStep
from flowstudio.flows.graph import FlowGraph
from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeResult, NodeSpec
from flowstudio.providers.permits import Park, ParkStep
from flowstudio.store import locks
from flowstudio.worker.context import render_node_params, render_off_loop
from flowstudio.worker.items import step_params
from flowstudio.worker.secret_values import mask_outcome, masking_secrets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    error: dict[str, Any]
    retryable: bool


Outcome = NodeResult | Park | Failure


def exit_with_parent() -> None:
    """Pool-process initializer: exit when the worker dies, even by SIGKILL (else the pool's
    children would wait on their queue for ever). Uses the parent's sentinel: portable."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class ProcessPool:
    """A lazily started spawn-context pool (works the same on Linux, macOS and Windows)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent,
            )
        return self._pool

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def notifier(
    pool: Any, context: dict[str, Any]
) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """`ctx.emit`: an ephemeral pg_notify (LLM tokens) through the worker's pool, secrets masked."""

    async def emit(channel: str, payload: dict[str, Any]) -> None:
        masked = mask_outcome(Done(payload), context).output
        async with pool.connection() as conn:
            await locks.notify(conn, channel, json.dumps(masked))

    return emit


@masking_secrets
async def execute_node(
    step: ClaimedStep,
    graph: FlowGraph,
    spec: NodeSpec,
    *,
    port_input: Any,
    context: dict[str, Any],
    settings: Any,
    http: Any,
    procpool: ProcessPool,
    pool: Any = None,
) -> Outcome:
    node_params, node_timeout = step_params(step, graph, port_input)
    timeout = node_timeout or spec.default_timeout_s
    ctx = NodeContext(
        step.run_id,
        step.step_id,
        step.node_id,
        step.item_index,
        step.attempt,
        step.inputs,
        port_input,
        settings,
        http,
        context,
        owner_id=step.owner_id,
        db=pool,
        emit=notifier(pool, context) if pool is not None else None,
        feeds_output=step.node_id in graph.nodes and graph.feeds_output(step.node_id),
        in_batch=step.in_batch,
    )
    try:
        with anyio.fail_after(timeout):
            raw_params = {**node_params, **(step.tweaks or {}).get(step.node_id, {})}
            if render_off_loop(raw_params):  # the thread stops itself at the deadline
                params = await anyio.to_thread.run_sync(
                    render_node_params,
                    spec,
                    raw_params,
                    context,
                    timeout,
                    step.node_id,
                    abandon_on_cancel=True,
                )
            else:
                params = render_node_params(spec, raw_params, context, timeout, step.node_id)
            if spec.compute is not None:
                import msgspec

                loop = asyncio.get_running_loop()
                raw = msgspec.to_builtins(params)
                output = await loop.run_in_executor(procpool.get(), spec.compute, raw, port_input)
                return Done(output)
            assert spec.execute is not None
            return await spec.execute(ctx, params)
    except TimeoutError:
        return Failure({"message": f"timed out after {timeout:g}s", "type": "timeout"}, True)
    except ParkStep as exc:  # not a failure: the step waits durably for its provider
        return exc.park
    except NodeError as exc:
        err = {"message": exc.message, "type": "node_error"}
        if exc.details is not None:
            err["details"] = exc.details
        return Failure(err, exc.retryable)
    except EgressError as exc:  # a node let the guard's refusal through: never its response
        return Failure({"message": exc.reason, "type": "egress"}, exc.retryable)
    except Exception as exc:  # a bug or an unexpected library error in a node: retry, record it
        log.exception("node %s (%s) raised", step.node_id, spec.type)
        return Failure({"message": f"{type(exc).__name__}: {exc}", "type": "exception"}, True)
