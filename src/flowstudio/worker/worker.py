"""The worker process: consume -> claim (lease + fencing token) -> ack -> execute -> commit -> publish.

`Worker.run()` opens the pool, the broker and the egress guard (`flowstudio.egress.Egress`: the
nodes' shared guarded HTTP pool), then runs in one anyio task group:
`consume_loop` (a slot per concurrent step; each message goes to `handle_message`, which claims
(the claim reads the step's context rows too) and acks, then `run_steps`: execute -> commit, and
with eager dispatch (EAGER_STEPS) the commit also claims the run's next ready step for this slot,
so a chain skips the broker (a pass-through output step it claims is committed in the same call,
FOLD_STEPS: nothing comes back to execute); with GROUP_COMMIT a success commits through the group
committer, `worker/groupcommit.py`, with others ready together), `heartbeat_loop`
(extends all held leases in one UPDATE; a step whose lease is gone has its execution cancelled: it was
cancelled or reaped), the outbox flusher, the process heartbeat, the metrics counters flusher
(`observability.counters`) and, with METRICS_PORT, its own /metrics. Each step executes inside a log
context (run_id, step_id, node_id, attempt, worker) and, when tracing is on, a span per execution. On SIGTERM it stops consuming,
gives in-flight steps `grace` seconds, then releases the rest (`release_step`: ready again at once).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import msgspec
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from flowstudio.crashpoints import crashpoint
from flowstudio.egress import Egress, EgressPolicy
from flowstudio.engine import agent, checkpoint, children
from flowstudio.engine.checkpoint import ClaimedStep, EagerClaim, NextStep
from flowstudio.engine.flowcache import cached_graph, load_graph
from flowstudio.engine.parking import commit_park
from flowstudio.engine.runtxn import LostRace, OutboxMessage
from flowstudio.flows.graph import FlowGraph
from flowstudio.nodes import llm_client, registry, sandbox_limits
from flowstudio.nodes.registry import (
    CallTools,
    Done,
    Expand,
    NodeError,
    NodeSpec,
    StartChild,
    Wait,
)
from flowstudio.observability import standalone, tracing
from flowstudio.observability.counters import COUNTERS
from flowstudio.observability.logs import log_context
from flowstudio.providers.permits import Park
from flowstudio.queue.broker import decode_message
from flowstudio.queue.factory import Delivery, make_broker
from flowstudio.queue.outbox import OutboxPublisher
from flowstudio.runtime import (
    new_process_id,
    process_heartbeat_loop,
    register_process,
    stop_on_signals,
    tune_gc,
    unregister_process,
)
from flowstudio.settings import Settings
from flowstudio.store import runs as runs_store
from flowstudio.store.db import TRANSIENT, open_pool, retry_db
from flowstudio.worker.context import build_context, context_nodes, reads_database
from flowstudio.worker.execute import Failure, Outcome, ProcessPool, execute_node
from flowstudio.worker.groupclaim import GroupClaimer
from flowstudio.worker.groupcommit import GroupCommitter
from flowstudio.worker.items import item_context, load_item, resolve_child_flow
from flowstudio.worker.liveness import LivenessLock

log = logging.getLogger(__name__)


async def ack(message: Delivery) -> None:
    """Ack, surviving a channel that died since delivery (broker restart, cut connection): the broker
    then redelivers the pointer, and the redelivery finds nothing to claim (stale token)."""
    try:
        await message.ack()
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
        log.warning("ack failed (%r); the broker will redeliver a stale pointer", exc)


@dataclass
class InFlight:
    step: ClaimedStep
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    lost: bool = False


def outcome_status(outcome: Outcome) -> tuple[str, str | None]:
    """The step status an outcome leads to, and an error message for a failure (span status)."""
    match outcome:
        case Failure(error=error):  # retried or not, this execution failed
            return "failed", str(error.get("message", ""))
        case Wait() | Park():
            return "waiting", None
        case Expand() | StartChild() | CallTools():
            return "waiting", None
    return "succeeded", None


class Worker:
    def __init__(self, settings: Settings, concurrency: int = 8, grace: float = 10.0) -> None:
        self.settings = settings
        sandbox_limits.configure(settings)  # TEMPLATE_MAX_* for this process's renders
        self.concurrency = concurrency
        self.grace = grace
        self.id = new_process_id("worker")
        self.inflight: dict[int, InFlight] = {}
        # CPU-bound nodes (`compute=`) run in a spawn pool sized by cores, not by held steps
        self.procpool = ProcessPool(max(1, min(concurrency, os.cpu_count() or 2)))
        # also the heartbeat's `info` (ops page, /metrics): the concurrency stays visible there
        self.stats = {
            "concurrency": concurrency,
            "claimed": 0,
            "succeeded": 0,
            "failed": 0,
            "lost": 0,
        }
        self.stopping = False
        self.eager = EagerClaim(settings.lease_seconds, context_nodes, settings.fold_steps)
        self.liveness = LivenessLock(settings, self.id) if settings.fast_takeover else None

    async def run(self) -> None:
        registry.load_all()
        await llm_client.warm_up()  # the SDK's first-request work, before any step waits on it
        # held steps mostly wait on sockets; they borrow a connection only to claim, commit and
        # heartbeat, so the pool stays small however many steps are held (WORKER_DB_POOL_SIZE)
        pool_size = max(4, min(self.concurrency + 2, self.settings.worker_db_pool_size))
        self.pool = await open_pool(
            self.settings, max_size=pool_size, name=self.id, generic_plans=True
        )
        self.broker = make_broker(self.settings)
        self.publisher = OutboxPublisher(self.broker, self.pool)
        self.committer = GroupCommitter(self.settings, self.pool, self.stats)
        self.claimer = GroupClaimer(self.settings, self.pool, self.stats, self.id)
        self.http = Egress(EgressPolicy.from_settings(self.settings))  # the nodes' egress guard
        stop = anyio.Event()
        try:
            if (
                self.liveness is not None
            ):  # the lock first: a registered liveness row is never lockless
                await retry_db(self.liveness.acquire, what="liveness lock")
                self.stats["liveness"] = 1
            await retry_db(
                lambda: register_process(self.pool, self.id, "worker", self._info()),
                what="register worker",
            )
            tune_gc(self.settings.gc_gen0_threshold)  # what start-up made is never garbage
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_on_signals, stop)
                tg.start_soon(self.heartbeat_loop)
                tg.start_soon(self.publisher.flush_loop)
                if self.settings.group_commit:
                    tg.start_soon(self.committer.run)
                    tg.start_soon(self.claimer.run)
                tg.start_soon(COUNTERS.flush_loop, self.pool)
                if self.settings.metrics_port:
                    tg.start_soon(standalone.serve, self.settings, "worker", self.pool)
                tg.start_soon(
                    process_heartbeat_loop,
                    self.pool,
                    self.id,
                    "worker",
                    self.stats,
                    max(1.0, self.settings.heartbeat_seconds),
                )
                async with anyio.create_task_group() as steps_tg:
                    async with anyio.create_task_group() as consume_tg:
                        consume_tg.start_soon(self.consume_loop, steps_tg)
                        await stop.wait()
                        self.stopping = True
                        consume_tg.cancel_scope.cancel()
                    await self.drain()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.publisher.flush_published()
                await unregister_process(self.pool, self.id)
                if self.liveness is not None:
                    await self.liveness.close()
                await self.http.aclose()
                await self.broker.close()
                await self.pool.close()
                self.procpool.shutdown()
            log.info("worker %s stopped: %s", self.id, self.stats)

    def _info(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "inflight": len(self.inflight), **self.stats}

    async def consume_loop(self, steps_tg: anyio.abc.TaskGroup) -> None:
        """Take a message only when a slot is free; its step runs in `steps_tg`, which outlives
        this loop so that a shutdown stops consuming without cutting in-flight steps."""
        slots = anyio.Semaphore(self.concurrency)
        log.info(
            "worker %s consuming %s (concurrency %d)",
            self.id,
            self.broker.queue_name,
            self.concurrency,
        )
        async for message in self.broker.deliveries(prefetch=self.concurrency):
            await slots.acquire()
            steps_tg.start_soon(self._handle_with_slot, message, slots)

    async def _handle_with_slot(self, message: Delivery, slots: anyio.Semaphore) -> None:
        try:
            await self.handle_message(message)
        except TRANSIENT as exc:  # DB lost mid-step: the lease expires, the reaper re-dispatches
            log.warning("step abandoned after a database error: %s", exc)
        except Exception:  # a bug met by one step must not take the other in-flight steps down:
            # its lease expires and the reaper re-dispatches it (failed after LEASE_RECOVERIES)
            log.exception("step handling failed; the step is left to lease expiry")
        finally:
            slots.release()

    async def handle_message(self, message: Delivery) -> None:
        try:
            msg = decode_message(message.body)
        except msgspec.DecodeError:
            log.error("dropping malformed message %r", message.body[:200])
            await ack(message)
            return

        async def claim() -> NextStep:  # with other claims arriving meanwhile, if any
            return await self.claimer.claim(msg)

        try:
            claimed = await retry_db(claim, what="claim")
        except LostRace:
            await ack(message)  # stale or duplicate pointer: nothing to do
            return
        await ack(message)  # from here the lease, not the broker, carries the step
        await self.run_steps(claimed)

    async def run_steps(self, first: NextStep) -> None:
        """Run a claimed step; with eager dispatch, then the next step its commit claimed for this
        worker, and so on up to `eager_steps` in a row (then the broker hands out the rest)."""
        step: ClaimedStep | None = first.step
        # context rows read by the claim or the eager claim (None: the step reads its own)
        rows: list[dict[str, Any]] | None = first.context_rows
        chained = 0
        while step is not None:
            self.stats["claimed"] += 1
            flight = self.inflight.setdefault(step.step_id, InFlight(step))
            try:
                eager = chained < self.settings.eager_steps and not self.stopping
                nxt = await self.execute_and_commit(flight, eager=eager, context_rows=rows)
            finally:
                self.inflight.pop(flight.step.step_id, None)
            step, rows = (nxt.step, nxt.context_rows) if nxt is not None else (None, None)
            chained += 1

    async def execute_and_commit(
        self,
        flight: InFlight,
        *,
        eager: bool = False,
        context_rows: list[dict[str, Any]] | None = None,
    ) -> NextStep | None:
        """Execute the step, commit its outcome; returns the next step claimed eagerly, if any."""
        step = flight.step
        with (
            log_context(
                run_id=step.run_id,
                step_id=step.step_id,
                node_id=step.node_id,
                attempt=step.attempt,
                worker=self.id,
            ),
            tracing.step_span(step, await self.run_traceparent(step)) as span,
        ):
            outcome, port_input = await self.execute(flight, context_rows)
            if flight.scope.cancelled_caught or outcome is None:
                log.info(
                    "step %s (run %s) stopped: lease lost or run cancelled",
                    step.step_id,
                    step.run_id,
                )
                self.stats["lost"] += 1
                tracing.end_step_span(span, "lost", "lease lost or run cancelled")
                return None
            tracing.end_step_span(span, *outcome_status(outcome))
            return await self.commit(step, outcome, port_input, eager=eager)

    async def run_traceparent(self, step: ClaimedStep) -> str | None:
        """The run's stored trace context; read only when tracing is on (one indexed read)."""
        if not tracing.enabled():
            return None
        async with self.pool.connection() as conn:
            return await runs_store.run_traceparent(conn, step.run_id)

    async def execute(
        self, flight: InFlight, context_rows: list[dict[str, Any]] | None
    ) -> tuple[Outcome | None, Any]:
        """Prepare and execute the step inside its cancel scope (no commit)."""
        step = flight.step
        spec = registry.get(step.node_type)
        outcome: Outcome | None = None
        port_input: Any = None
        with flight.scope:
            if spec is None:
                outcome = Failure({"message": f"unknown node type {step.node_type!r}"}, False)
            else:
                try:
                    graph, port_input, context = await self.prepare(step, spec, context_rows)
                except TRANSIENT:
                    raise  # the database went away: the lease expires, the reaper re-dispatches
                except Exception as exc:  # a step that cannot even start fails; the worker lives
                    log.exception("step %s (run %s) could not start", step.step_id, step.run_id)
                    outcome = Failure({"message": f"the step could not start: {exc}"}, False)
                else:
                    outcome = await execute_node(
                        step,
                        graph,
                        spec,
                        port_input=port_input,
                        context=context,
                        settings=self.settings,
                        http=self.http,
                        procpool=self.procpool,
                        pool=self.pool,
                    )
        return outcome, port_input

    async def prepare(
        self, step: ClaimedStep, spec: NodeSpec, context_rows: list[dict[str, Any]] | None
    ) -> tuple[FlowGraph, Any, dict[str, Any]]:
        """The step's pinned graph, port input and template context (one pooled connection, and
        none for a top-level step whose graph is cached, whose context rows the claim read and
        that uses no secret: most steps of a chain under eager dispatch)."""
        graph = cached_graph(step.flow_id, step.flow_version)
        if (
            graph is not None
            and step.item_index == 0
            and spec.type != "agent"
            and not reads_database(step, graph, spec, context_rows)
        ):
            port_input, context = await build_context(
                None, step, graph, spec, self.settings.secret_key, context_rows
            )
            return graph, port_input, context
        async with self.pool.connection() as conn:
            graph = await load_graph(conn, step.flow_id, step.flow_version)
            port_input, context = await build_context(
                conn, step, graph, spec, self.settings.secret_key, context_rows
            )
            if step.item_index > 0:  # a map item or an agent's tool call
                item = await load_item(conn, step)
                context.update(item_context(graph, step, item))
                port_input = item
            elif spec.type == "agent":  # the agent's saved state and tool results
                context["agent"] = await agent.load_agent_view(conn, step)
        return graph, port_input, context

    async def commit(
        self, step: ClaimedStep, outcome: Outcome, port_input: Any, *, eager: bool
    ) -> NextStep | None:
        claimed: NextStep | None = None

        async def do_commit() -> list[OutboxMessage]:
            nonlocal claimed
            if isinstance(outcome, Done) and self.settings.group_commit:  # no connection held
                outbox, claimed = await self.committer.commit_success(
                    step,
                    self.id,
                    input_=port_input,
                    output=outcome.output,
                    branch=outcome.branch,
                    eager=self.eager if eager else None,
                )
                return outbox
            async with self.pool.connection() as conn:
                match outcome:
                    case Done(output=output, branch=branch):
                        outbox, claimed = await checkpoint.commit_success(
                            conn,
                            step,
                            self.id,
                            input_=port_input,
                            output=output,
                            branch=branch,
                            eager=self.eager if eager else None,
                            one_call=self.settings.one_call_commit,
                        )
                        return outbox
                    case Wait(seconds=seconds, output=output, accepts_signal=accepts_signal):
                        return await checkpoint.commit_wait(
                            conn,
                            step,
                            self.id,
                            input_=port_input,
                            output=output,
                            seconds=seconds,
                            accepts_signal=accepts_signal,
                        )
                    case Park():  # no provider capacity or a 429: waiting, no slot, no lease
                        return await commit_park(conn, step, self.id, outcome)
                    case Failure(error=error, retryable=retryable):
                        await checkpoint.commit_failure(
                            conn, step, self.id, error=error, retryable=retryable, input_=port_input
                        )
                        return []
                    case CallTools(calls=calls, state=state):
                        return await agent.commit_tool_calls(
                            conn, step, self.id, input_=port_input, calls=calls, state=state
                        )
                    case Expand(items=items):
                        return await children.commit_expand(
                            conn, step, self.id, input_=port_input, items=items
                        )
                    case StartChild(flow_id=flow_id, version=version, inputs=inputs):
                        try:
                            pinned = await resolve_child_flow(conn, step, flow_id, version)
                        except NodeError as exc:
                            await checkpoint.commit_failure(
                                conn,
                                step,
                                self.id,
                                error={"message": exc.message},
                                retryable=False,
                                input_=port_input,
                            )
                            return []
                        return await children.commit_start_child(
                            conn,
                            step,
                            self.id,
                            input_=port_input,
                            flow_id=flow_id,
                            version=pinned,
                            inputs=inputs,
                        )
            raise AssertionError("unreachable")

        try:
            outbox = await retry_db(
                do_commit, what="commit", give_up_after=self.settings.lease_seconds
            )
        except LostRace as exc:
            log.warning("result of step %s dropped: %s", step.step_id, exc)
            self.stats["lost"] += 1
            return None
        self.stats["failed" if isinstance(outcome, Failure) else "succeeded"] += 1
        if isinstance(outcome, Failure):  # the log context names the run, step, node and attempt
            log.warning(
                "step failed (%s): %.300s",
                "retryable" if outcome.retryable else "not retryable",
                outcome.error.get("message", ""),
            )
        crashpoint("worker.after_commit")
        if claimed is not None:  # held from now: heartbeats extend it, a shutdown releases it
            self.inflight[claimed.step.step_id] = InFlight(claimed.step)
        await self.publisher.publish_committed(outbox)
        return claimed

    async def heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.settings.heartbeat_seconds)
            if self.liveness is not None and not await self.liveness.check():
                for held_flight in list(self.inflight.values()):  # may be taken over: stop
                    held_flight.lost = True
                    held_flight.scope.cancel()
                continue
            # in run order, as group commits lock: the two cannot wait on each other in a cycle
            flights = sorted(self.inflight.values(), key=lambda f: (f.step.run_id, f.step.step_id))
            held = [(f.step.step_id, f.step.attempt) for f in flights]
            if not held:
                continue
            try:
                async with self.pool.connection() as conn:
                    alive = await checkpoint.heartbeat(
                        conn, self.id, held, self.settings.lease_seconds
                    )
            except Exception as exc:  # DB down: keep working; the commit's fence decides
                log.warning("lease heartbeat failed: %s", exc)
                continue
            for step_id, _ in held:
                flight = self.inflight.get(step_id)
                if flight is not None and step_id not in alive:
                    flight.lost = True
                    flight.scope.cancel()

    async def drain(self) -> None:
        """Let in-flight steps finish for `grace` seconds, then hand the rest back."""
        with anyio.move_on_after(self.grace):
            while self.inflight:  # noqa: ASYNC110 -- tasks end on their own; poll the dict
                await anyio.sleep(0.05)
        for flight in list(self.inflight.values()):
            flight.scope.cancel()
            try:
                async with self.pool.connection() as conn:
                    outbox = await checkpoint.release_step(conn, flight.step, self.id, "shutdown")
                await self.publisher.publish_committed(outbox)
            except (LostRace, Exception) as exc:  # the reaper takes it after the lease expires
                log.warning("could not release step %s: %s", flight.step.step_id, exc)
