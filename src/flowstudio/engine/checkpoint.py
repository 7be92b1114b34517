"""The step lifecycle as checkpoint transactions: start a run, claim, succeed, fail/retry, wait, release.
(`start_run` stores the run's trace context, `observability.tracing.new_run_traceparent`, when
tracing is on.)

Called by the API (`start_run`) and the worker (`claim.claim_step` -> execute -> `commit_success` |
`commit_failure` | `commit_wait`; `heartbeat` while executing; `release_step` on shutdown);
`commit_success(eager=EagerClaim(...))` also claims the next step for the same worker (eager dispatch,
`RunTxn.claim_at_flush`) and returns it as a `NextStep`; a success in a chain is one server-side
call (`engine/onecall.py`, migration 0027). Each is ONE
transaction under the run row lock (`run_transaction`): the step's guarded move (status + attempt +
lease owner = the fencing token), its payload, its event rows, the planner's newly ready steps and their
outbox rows commit together. A call that finds its row already moved raises `LostRace` and commits
nothing; the caller then only acks its message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from flowstudio.engine import onecall
from flowstudio.engine.advance import advance_run, fail_run
from flowstudio.engine.control import consume_buffered_signal
from flowstudio.engine.fanout import settle_item
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.planner import ready_on_success
from flowstudio.engine.runtxn import LostRace, OutboxMessage, RunTxn, run_transaction
from flowstudio.engine.txnsql import HEARTBEAT, SAVE_IO
from flowstudio.flows.graph import FlowGraph
from flowstudio.observability import tracing


@dataclass(frozen=True)
class ClaimedStep:
    step_id: int
    run_id: str
    node_id: str
    item_index: int
    node_type: str
    attempt: int
    max_attempts: int
    flow_id: str
    flow_version: int
    inputs: dict[str, Any]
    owner_id: str
    tweaks: dict[str, Any] | None = None  # per-run param overrides {node_id: {param: value}}
    in_batch: bool | None = None  # the run is a batch item (None: not read)


class IdempotencyKeyReused(ValueError):
    """The caller's Idempotency-Key already named a run of another flow (the API answers 409)."""


@dataclass(frozen=True)
class StartedRun:
    id: str
    status: str
    created: bool
    outbox: list[OutboxMessage]


def max_attempts_of(graph: FlowGraph, node_id: str) -> int:
    retry = graph.nodes[node_id].data.retry
    return retry.max_attempts if retry else 1


async def start_run(
    conn: psycopg.AsyncConnection[Any],
    *,
    flow_id: Any,
    version: int,
    owner_id: Any,
    inputs: dict[str, Any],
    idempotency_key: str | None = None,
    parent_run_id: Any = None,
    batch_id: Any = None,
    tweaks: dict[str, Any] | None = None,
    watched_for: float | None = None,
) -> StartedRun:
    """Insert the run, all its steps (roots ready) and their outbox rows in one transaction.
    `watched_for`: the caller follows the run live from its start: its commits NOTIFY for that
    many seconds (`runs.watched_until`, migration 0034; `store.runs.watch_run` renews it).

    The same (owner, Idempotency-Key) returns the existing run: a client that retries after the API died
    between commit and response gets the run it created. The key is scoped by flow: reused on another
    flow it raises `IdempotencyKeyReused` (never another flow's run).
    """
    graph = await load_graph(conn, flow_id, version)
    run_id = uuid.uuid4()
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO runs (id, flow_id, flow_version, owner_id, inputs, idempotency_key,
                                 parent_run_id, batch_id, tweaks, traceparent, watched_until)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       now() + make_interval(secs => %s))
               ON CONFLICT (owner_id, idempotency_key) DO NOTHING RETURNING id""",
            (
                run_id,
                flow_id,
                version,
                owner_id,
                Jsonb(inputs),
                idempotency_key,
                parent_run_id,
                batch_id,
                Jsonb(tweaks or {}),
                tracing.new_run_traceparent(),  # None unless OpenTelemetry is on
                watched_for,  # None: NULL, nobody follows it yet
            ),
        )
        if await cur.fetchone() is None:
            cur = await conn.execute(
                "SELECT id, status, flow_id FROM runs WHERE owner_id = %s AND idempotency_key = %s",
                (owner_id, idempotency_key),
            )
            row = await cur.fetchone()
            assert row is not None
            if str(row["flow_id"]) != str(flow_id):
                raise IdempotencyKeyReused(idempotency_key)
            return StartedRun(str(row["id"]), row["status"], False, [])
        nodes = graph.definition.nodes
        async with conn.cursor() as c:
            await c.executemany(
                "INSERT INTO steps (run_id, node_id, node_type, max_attempts) VALUES (%s,%s,%s,%s)",
                [(run_id, n.id, n.type, max_attempts_of(graph, n.id)) for n in nodes],
            )
        async with run_transaction(conn, run_id) as txn:  # a savepoint inside the same transaction
            txn.event("run", to_status="queued")
            await advance_run(txn, graph)
    return StartedRun(str(run_id), txn.status, True, txn.outbox)


def claimed_step(txn: RunTxn, row: dict[str, Any]) -> ClaimedStep:
    run = txn.run
    return ClaimedStep(
        row["id"],
        txn.run_id,
        row["node_id"],
        row["item_index"],
        row["node_type"],
        row["attempt"],
        row["max_attempts"],
        str(run["flow_id"]),
        run["flow_version"],
        run["inputs"],
        str(run["owner_id"]),
        run["tweaks"] or None,
        run.get("in_batch"),
    )


FENCE = "s.id = %(step)s AND s.attempt = %(attempt)s AND s.lease_owner = %(owner)s"
CLEAR_LEASE = "lease_owner = NULL, lease_expires_at = NULL"
SUCCEED_SET = f"branch = %(branch)s, finished_at = clock_timestamp(), error = NULL, {CLEAR_LEASE}"


def fence_params(step: ClaimedStep, worker_id: str) -> dict[str, Any]:
    return {"step": step.step_id, "attempt": step.attempt, "owner": worker_id}


async def save_io(
    conn: psycopg.AsyncConnection[Any], step_id: int, input_: Any, output: Any
) -> None:
    """A step's payload row, when it was not written with the step's move (`move_steps(io=)`)."""
    await conn.execute(
        SAVE_IO, {"io_step": step_id, "io_input": Jsonb(input_), "io_output": Jsonb(output)}
    )


@dataclass(frozen=True)
class EagerClaim:
    """Ask `commit_success` to claim the next step for the same worker (eager dispatch).
    `context_nodes(graph, node_id)` names the nodes whose state and output that step reads."""

    lease_seconds: float
    context_nodes: Callable[[FlowGraph, str], Sequence[str]]
    fold_steps: bool = False  # FOLD_STEPS: commit a claimed pass-through output step too


@dataclass(frozen=True)
class NextStep:
    """A step claimed eagerly by `commit_success` (or by a claim that reads context,
    `claim.claim_step_reading_context`), with its context rows read in that transaction (node_id,
    status, branch, output: what `worker.context.build_context` would have queried)."""

    step: ClaimedStep
    context_rows: list[dict[str, Any]] | None  # None: not read (the worker queries them)


async def commit_success(
    conn: psycopg.AsyncConnection[Any],
    step: ClaimedStep,
    worker_id: str,
    *,
    input_: Any,
    output: Any,
    branch: str | None = None,
    data: Any = None,
    eager: EagerClaim | None = None,
    one_call: bool = True,
) -> tuple[list[OutboxMessage], NextStep | None]:
    """The hot path. A success in a chain (`onecall.chain_plan`) is ONE server-side call with
    `one_call` (ONE_CALL_COMMIT, on by default): the whole transaction below in one statement.
    Otherwise: the guarded move, the payload row and the run's step states are one statement.

    With `eager`, the first top-level step this success made ready is claimed by the same worker
    inside the transaction's final statement (no outbox row, no broker round trip, its context read
    there too). Its lease carries it like any claim: the reaper takes it if the worker dies."""
    graph = await load_graph(conn, step.flow_id, step.flow_version)
    if one_call and step.item_index == 0 and conn.info.transaction_status == TransactionStatus.IDLE:
        chain = chain_plan_of(graph, step, branch, eager)
        if chain is not None:
            query, args = onecall.statement(
                chain, **one_call_args(step, worker_id, branch, input_, output, data)
            )
            done = await onecall.call(conn, query, args)
            if done is not None:  # else: nothing written; the general path decides
                return one_call_outcome(step, done, chain.claim)
    async with run_transaction(conn, step.run_id, defer_lock=True) as txn:
        params = success_params(step, worker_id, branch)
        if step.item_index > 0:  # a map item: the map's own bookkeeping decides what is next
            moved = await txn.move_steps(
                "succeed", FENCE, params, set_sql=SUCCEED_SET, data=data, io=(input_, output)
            )
            if not moved:
                raise lease_lost(step)
            await settle_item(txn, graph, step.node_id, step.item_index)
        else:
            moved, states = await txn.move_steps_reading_states(
                "succeed",
                FENCE,
                params,
                set_sql=SUCCEED_SET,
                data=data,
                io=(input_, output),
                then_ready=ready_on_success(graph, step.node_id, branch),
            )
            if not moved:
                raise lease_lost(step)
            await advance_run(txn, graph, states)
            claim_next_eagerly(txn, graph, eager, worker_id)
    return txn.outbox, next_step(txn)


def chain_plan_of(
    graph: FlowGraph, step: ClaimedStep, branch: str | None, eager: EagerClaim | None
) -> onecall.ChainPlan | None:
    """The one call's plan for this success (None: the general path)."""
    if eager is None:
        return onecall.chain_plan(graph, step.node_id, branch, claim=False)
    return onecall.chain_plan(
        graph,
        step.node_id,
        branch,
        claim=True,
        context_nodes=eager.context_nodes,
        lease_seconds=eager.lease_seconds,
        fold=eager.fold_steps,
        tweaks=step.tweaks,
    )


def one_call_args(
    step: ClaimedStep, worker_id: str, branch: str | None, input_: Any, output: Any, data: Any
) -> dict[str, Any]:
    return {
        "run_id": step.run_id,
        "step_id": step.step_id,
        "attempt": step.attempt,
        "worker_id": worker_id,
        "branch": branch,
        "input_": input_,
        "output": output,
        "data": data,
    }


def one_call_outcome(
    step: ClaimedStep, done: onecall.OneCallResult, claim: str | None
) -> tuple[list[OutboxMessage], NextStep | None]:
    """The one call's result as `commit_success` returns it; LostRace if it moved nothing. The
    claimed step is of the same run: its run fields are this step's."""
    if done.outcome == "no_run":
        raise LostRace(f"run {step.run_id} not found")
    if done.outcome != "committed":
        raise lease_lost(step)
    row = done.claimed
    if row is None or claim is None:
        return done.outbox, None
    nxt = replace(
        step,
        step_id=row.id,
        node_id=claim,
        node_type=row.node_type,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
    )
    return done.outbox, NextStep(nxt, done.context)


def success_params(step: ClaimedStep, worker_id: str, branch: str | None) -> dict[str, Any]:
    return {**fence_params(step, worker_id), "branch": branch}


def lease_lost(step: ClaimedStep) -> LostRace:
    """The fenced move matched nothing: the step's lease (or the step itself) is gone."""
    return LostRace(f"step {step.step_id} attempt {step.attempt}: lease lost")


def claim_next_eagerly(
    txn: RunTxn, graph: FlowGraph, eager: EagerClaim | None, worker_id: str
) -> None:
    """With `eager`, claim the first top-level step this transaction made ready at its flush."""
    if eager is not None and txn.ready_nodes and txn.status == "running":
        next_id, node_id = next(iter(txn.ready_nodes.items()))
        nodes = list(eager.context_nodes(graph, node_id))
        txn.claim_at_flush(next_id, worker_id, eager.lease_seconds, nodes)


def next_step(txn: RunTxn) -> NextStep | None:
    """After the flush: the step the eager claim moved, with the context rows it read."""
    if txn.claimed is None:
        return None
    return NextStep(claimed_step(txn, txn.claimed), txn.claimed_context)


async def commit_wait(
    conn: psycopg.AsyncConnection[Any],
    step: ClaimedStep,
    worker_id: str,
    *,
    input_: Any,
    output: Any,
    seconds: float | None,
    accepts_signal: bool = False,
) -> list[OutboxMessage]:
    """Park the step: `waiting` with a due time (a durable timer) and/or until a signal. A signal
    that arrived before the node started waiting is consumed in this same transaction."""
    graph = await load_graph(conn, step.flow_id, step.flow_version)
    async with run_transaction(conn, step.run_id, defer_lock=True) as txn:
        moved = await txn.move_steps(
            "wait",
            FENCE,
            {**fence_params(step, worker_id), "secs": seconds},
            set_sql="due_at = CASE WHEN %(secs)s::float8 IS NULL THEN NULL "
            f"ELSE now() + make_interval(secs => %(secs)s::float8) END, {CLEAR_LEASE}",
            data={"seconds": seconds},
        )
        if not moved:
            raise lease_lost(step)
        await save_io(conn, step.step_id, input_, output)
        if not (
            accepts_signal
            and await consume_buffered_signal(
                txn, graph, step.step_id, step.node_id, step.item_index
            )
        ):
            await advance_run(txn, graph)
    return txn.outbox


def backoff_seconds(graph: FlowGraph, node_id: str, attempt: int) -> float:
    retry = graph.nodes[node_id].data.retry
    if retry is None:
        return 0.0
    return float(min(retry.max_interval, retry.initial_interval * retry.backoff ** (attempt - 1)))


async def commit_failure(
    conn: psycopg.AsyncConnection[Any],
    step: ClaimedStep,
    worker_id: str,
    *,
    error: dict[str, Any],
    retryable: bool,
    input_: Any = None,
) -> str:
    """Retry later (`retrying` with a due time) or fail the step and with it the run. The graph
    is loaded only when needed (backoff, map items): a step whose flow version cannot be loaded
    can still be failed."""
    retry = retryable and step.attempt < step.max_attempts
    graph = None
    if retry or step.item_index > 0:
        graph = await load_graph(conn, step.flow_id, step.flow_version)
    async with run_transaction(conn, step.run_id, defer_lock=True) as txn:
        fence = fence_params(step, worker_id)
        err = {**error, "attempt": step.attempt}
        if retry:
            assert graph is not None
            delay = backoff_seconds(graph, step.node_id, step.attempt)
            moved = await txn.move_steps(
                "retry",
                FENCE,
                {**fence, "err": Jsonb(err), "delay": delay},
                set_sql="error = %(err)s, due_at = now() + make_interval(secs => %(delay)s), "
                + CLEAR_LEASE,
                data=err,
            )
            outcome = "retrying"
        else:
            moved = await txn.move_steps(
                "fail",
                FENCE,
                {**fence, "err": Jsonb(err)},
                set_sql=f"error = %(err)s, finished_at = clock_timestamp(), {CLEAR_LEASE}",
                data=err,
            )
            outcome = "failed"
        if not moved:
            raise lease_lost(step)
        await save_io(conn, step.step_id, input_, None)
        if outcome == "failed" and step.item_index > 0:
            assert graph is not None
            await settle_item(txn, graph, step.node_id, step.item_index, failed=True)
        elif outcome == "failed":
            await fail_run(txn, {"node_id": step.node_id, **error})
    return outcome


async def release_step(
    conn: psycopg.AsyncConnection[Any], step: ClaimedStep, worker_id: str, reason: str
) -> list[OutboxMessage]:
    """Give a claimed step back (worker shutting down): ready again at once, same attempt count."""
    async with run_transaction(conn, step.run_id, defer_lock=True) as txn:
        moved = await txn.move_steps(
            "release",
            FENCE,
            fence_params(step, worker_id),
            set_sql=f"dispatched_at = now(), {CLEAR_LEASE}",
            data={"reason": reason},
        )
        if not moved:
            raise LostRace(f"step {step.step_id}: nothing to release")
    return txn.outbox


async def heartbeat(
    conn: psycopg.AsyncConnection[Any],
    worker_id: str,
    steps: list[tuple[int, int]],
    lease_seconds: float,
) -> set[int]:
    """Extend the leases of (step_id, attempt) pairs; returns the ids still held (others are lost).

    It never waits for a row lock (`SKIP LOCKED`): a step row locked by a transaction in flight
    (most often this worker's own commit of it, or a group commit holding it) is reported held, as
    the statement's snapshot shows it, and is extended by the next heartbeat if still running. A
    heartbeat that waited would hold the row locks of every other step it had already extended:
    a group commit locking runs in its own order then waited for the heartbeat while the heartbeat
    waited for it, a deadlock PostgreSQL broke only after `deadlock_timeout` (1 s), a second in
    which none of the worker's commits could finish (measured: one per `bench --llm` run)."""
    if not steps:
        return set()
    ids, attempts = [s for s, _ in steps], [a for _, a in steps]
    cur = await conn.execute(
        HEARTBEAT, {"ids": ids, "attempts": attempts, "owner": worker_id, "lease": lease_seconds}
    )
    return {r["id"] for r in await cur.fetchall()}
