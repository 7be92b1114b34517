"""A chain step's success as ONE server-side call: `step_commit_success` (migration 0027).

`checkpoint.commit_success` and the group commit (`engine/groupcommit.py`) ask `chain_plan()` first:
when every successor of the node waits on it alone and takes an active edge (`planner.
chain_successors`), the planner's decision is known before the move, so the whole checkpoint
transaction (run lock, fenced move, payload, ready moves, eager claim and its context, outbox,
events, NOTIFY) runs in PostgreSQL in one statement: one round trip, no Python between two
messages. A node without successors (the run's last step) ends the run in the same call, outputs
collected as `advance.collect_outputs` does, when every other step is done. Anything else (a skip,
a join, a run that goes on waiting, a map item) takes the general path, and so does a run that is
not `running` (outcome `general`: the function wrote nothing). A success whose successors were
not all pending (a broken plan; cannot happen while the planner is at its fixpoint) makes the
function fail with SQLSTATE FS001 and roll back: the caller falls back too, as it does when the
function is missing (a worker upgraded before `flowstudio migrate` ran).

With eager dispatch, a claimed successor that is a foldable `output` node (`foldable`: no params,
no tweak, no successor; it only passes its input through) is committed in the same statement
(FOLD_STEPS, migration 0032): the plan's `fold` names the flow's outputs, and the call goes through
`step_commit_success_many`, which calls the function a second time for the claimed step with
input = output = this step's output; the claim is then not handed back (the run has ended). If
that second call writes nothing (another step is still live), the claim is handed back as before.

`statement()` builds the call, `take()` reads its row; `call()` sends it alone (autocommit);
`many_statement()` makes several calls one statement (a group commit's chain members).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.planner import chain_successors
from flowstudio.engine.runtxn import NOTIFY_CHANNEL, OutboxMessage
from flowstudio.flows.graph import FlowGraph

log = logging.getLogger(__name__)

BROKEN_PLAN = "FS001"  # the function's SQLSTATE when the successors were not as planned
CALL = """SELECT * FROM step_commit_success(
    %(run)s, %(step)s, %(attempt)s, %(owner)s, %(branch)s, %(input)s, %(output)s, %(data)s,
    %(ready)s, %(claim)s, %(lease)s, %(ctx)s, %(channel)s, %(outputs)s)"""


@dataclass(frozen=True)
class ChainPlan:
    """What the one call does after the move: make `ready` ready, claim `claim` (eager); or,
    for a node without successors (`outputs` set: the flow's output nodes), end the run when
    every other step is done."""

    ready: tuple[str, ...]
    claim: str | None = None
    context_nodes: list[str] = field(default_factory=list)  # what the claimed step's context reads
    lease_seconds: float = 0.0
    outputs: list[str] | None = None
    fold: list[str] | None = None  # the claimed output step commits in the same call (0032)


@dataclass(frozen=True)
class ClaimedRow:
    """The step the call claimed (the plan's `claim` node, top-level), as it is now."""

    id: int
    node_type: str
    attempt: int
    max_attempts: int


@dataclass
class OneCallResult:
    outcome: str  # committed | lost | no_run | general (nothing written: take the general path)
    outbox: list[OutboxMessage] = field(default_factory=list)
    claimed: ClaimedRow | None = None  # the eagerly claimed step
    context: list[dict[str, Any]] = field(default_factory=list)  # and its context rows


def foldable(graph: FlowGraph, node_id: str, tweaks: dict[str, Any] | None) -> bool:
    """An `output` node that only passes its input through: no params (nothing to render, no
    secret), no per-run tweak, no successor. Its step's input and output are its one
    predecessor's output, so that step's success can commit it too."""
    node = graph.nodes[node_id]
    return (
        node.type == "output"
        and not node.data.params
        and not graph.outgoing(node_id)
        and node_id not in (tweaks or {})
    )


def chain_plan(
    graph: FlowGraph,
    node_id: str,
    branch: str | None,
    *,
    claim: bool,
    context_nodes: Callable[[FlowGraph, str], Sequence[str]] | None = None,
    lease_seconds: float = 0.0,
    fold: bool = False,
    tweaks: dict[str, Any] | None = None,
) -> ChainPlan | None:
    """The one call's plan for a success of `node_id` with `branch`, or None (general path).
    With `claim` (eager dispatch) the first successor is claimed for the same worker; with
    `fold`, a lone successor that is `foldable` is also committed in the same call."""
    if not graph.outgoing(node_id):  # the run's last step, if every other one is done
        return ChainPlan((), outputs=list(graph.output_nodes))
    ready = chain_successors(graph, node_id, branch)
    if not ready:
        return None
    if not claim or context_nodes is None:
        return ChainPlan(ready)
    first = ready[0]
    folded = list(graph.output_nodes) if fold and ready == (first,) else None
    if folded is not None and not foldable(graph, first, tweaks):
        folded = None
    return ChainPlan(ready, first, list(context_nodes(graph, first)), lease_seconds, fold=folded)


def statement(
    plan: ChainPlan,
    *,
    run_id: str,
    step_id: int,
    attempt: int,
    worker_id: str,
    branch: str | None,
    input_: Any,
    output: Any,
    data: Any = None,
) -> tuple[str, dict[str, Any]]:
    return CALL, {
        "run": run_id,
        "step": step_id,
        "attempt": attempt,
        "owner": worker_id,
        "branch": branch,
        "input": Jsonb(input_),
        "output": Jsonb(output),
        "data": None if data is None else Jsonb(data),
        "ready": list(plan.ready),
        "claim": plan.claim,
        "lease": plan.lease_seconds,
        "ctx": plan.context_nodes,
        "channel": NOTIFY_CHANNEL,
        "outputs": plan.outputs,
        "fold": plan.fold,  # read by `step_commit_success_many` only (0032)
    }


MANY = "SELECT * FROM step_commit_success_many(%(members)s) ORDER BY idx"


def many_statement(calls: Sequence[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """Several `statement()`s as ONE call of `step_commit_success_many` (migration 0029), in
    their order; row `idx` is the i-th call's."""
    members = []
    for _, args in calls:
        member = {k: v for k, v in args.items() if k not in ("input", "output", "data")}
        member["input"], member["output"] = args["input"].obj, args["output"].obj
        member["data"] = None if args["data"] is None else args["data"].obj
        members.append(member)
    return MANY, {"members": Jsonb(members)}


def take(run_id: str, row: dict[str, Any]) -> OneCallResult:
    if row["outcome"] != "committed":
        return OneCallResult(row["outcome"])
    outbox = [
        OutboxMessage(i, run_id, s, t)
        for i, s, t in zip(row["ob_ids"], row["ob_steps"], row["ob_tokens"], strict=True)
    ]
    if row["cl_id"] is None:
        return OneCallResult("committed", outbox)
    claimed = ClaimedRow(row["cl_id"], row["cl_type"], row["cl_attempt"], row["cl_max_attempts"])
    return OneCallResult("committed", outbox, claimed, row["cl_ctx"])


def broken_plan(exc: psycopg.Error) -> bool:
    return exc.sqlstate == BROKEN_PLAN


async def call(
    conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]
) -> OneCallResult | None:
    """The call alone, as its own transaction; None when it did nothing the caller can use
    (`general`, or a broken plan: logged, rolled back): take the general path. A plan with
    `fold` goes through `step_commit_success_many` (a group of one), which does the fold."""
    run_id = str(params["run"])
    if params.get("fold") is not None:
        query, params = many_statement([(query, params)])
    try:
        cur = await conn.execute(query, params)
    except psycopg.errors.UndefinedFunction:  # a worker of this release on a database not yet
        # migrated (`flowstudio migrate` applies 0027): the commit works, one round trip slower
        log.warning("step_commit_success is missing (migration 0027): the general path commits")
        return None
    except psycopg.Error as exc:
        if not broken_plan(exc):
            raise
        log.error("one-call commit refused its plan, taking the general path: %s", exc)
        return None
    row = await cur.fetchone()
    assert row is not None
    result = take(run_id, row)
    return None if result.outcome == "general" else result
