"""Group commit: the successes of several steps (of different runs) checkpointed in ONE transaction.

`commit_successes(conn, items)` is `checkpoint.commit_success` for many top-level steps at once, in
two messages to PostgreSQL whatever their number: (1) `BEGIN`, then for each run, in run-id order
(every group locks runs in the same order, so two groups cannot deadlock on them): the run lock,
the fenced success move with its payload, the run's step states and the ready move of its
successors (one statement); then Python plans each run (`advance_run`, eager claim); (2) each
run's flush (events, outbox, NOTIFY, eager claim) and one `COMMIT`. A chain step's success
(`onecall.chain_plan`) is instead its whole commit in one call in the first message (migration
0027's `step_commit_success`, at the member's place in the lock order; chain members in a row are
ONE statement, `step_commit_success_many`, migration 0029); one whose call wrote
nothing (its run was not `running`, or a last step whose run has other live steps) is answered
None: its slot commits it alone. A group of chain members only is that one statement and nothing
else: no BEGIN, no COMMIT, no pipeline (the connection is in autocommit, so the statement is its
own transaction): one round trip (crash point `group_commit.before_one_statement`).

Every guarantee of the single commit holds per item: the fence (attempt + lease owner) decides
each move; a member whose move matched nothing is a `LostRace` for that member only (its ready move
happens only if its move did, `txnsql.READY_AFTER_MOVED`, so it wrote nothing and nothing must be
rolled back) and the others commit; events are numbered per run under its lock. A crash
anywhere before the COMMIT loses the whole group and nothing else: every member's lease then
carries its step as after any crash (crash points `group_commit.between_statements` and
`group_commit.before_one_statement`). A database
error (a deadlock with another transaction, a lost connection) raises `GroupFailed` after the
rollback: the caller commits each member alone.

Items must be top-level steps (item_index 0) of distinct runs; `worker/groupcommit.py` forms them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from flowstudio.crashpoints import crashpoint
from flowstudio.engine import onecall
from flowstudio.engine.advance import advance_run
from flowstudio.engine.checkpoint import (
    FENCE,
    SUCCEED_SET,
    ClaimedStep,
    EagerClaim,
    NextStep,
    chain_plan_of,
    claim_next_eagerly,
    lease_lost,
    next_step,
    one_call_args,
    one_call_outcome,
    success_params,
)
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.planner import ready_on_success
from flowstudio.engine.runtxn import LostRace, OutboxMessage, RunTxn, rollback
from flowstudio.engine.txnsql import LOCK_RUN
from flowstudio.flows.graph import FlowGraph
from flowstudio.store.db import pipeline_enabled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Success:
    """One member of a group: what `commit_success` would have been called with."""

    step: ClaimedStep
    worker_id: str
    input_: Any
    output: Any
    branch: str | None = None
    data: Any = None
    eager: EagerClaim | None = None


@dataclass(frozen=True)
class Committed:
    outbox: list[OutboxMessage]
    next: NextStep | None


class GroupFailed(Exception):
    """The group's transaction failed as a whole and was rolled back: commit each member alone."""


@dataclass
class _Member:
    item: Success
    graph: FlowGraph
    txn: RunTxn
    then_ready: tuple[str, ...]
    chain: onecall.ChainPlan | None  # a chain step's success: its whole commit is one call
    first: int = 0  # index of its call's statement, or of its lock statement (its move follows)
    row: int = 0  # a chain member: its row in that statement's result


# chain members in a row as one statement (migration 0029); off for the process once the
# database says the function is missing (a worker upgraded before `flowstudio migrate` ran)
_MANY = {"enabled": True}


async def commit_successes(
    conn: psycopg.AsyncConnection[Any],
    items: list[Success],
    *,
    one_call: bool = True,
    many: bool | None = None,
) -> list[Committed | LostRace | None]:
    """Commit the members in one transaction; per member (in the given order) its outbox and
    eagerly claimed next step, the LostRace that dropped it, or None: a chain step whose one call
    wrote nothing (answered `general`), commit it alone. Raises GroupFailed. `many`: chain members
    in a row as one statement (default: unless the database lacks it)."""
    many = _MANY["enabled"] if many is None else many
    runs = [m.step.run_id for m in items]
    if len(set(runs)) != len(runs) or any(m.step.item_index for m in items):
        raise ValueError("a group holds top-level steps of distinct runs")
    members = []
    for item in sorted(items, key=lambda m: m.step.run_id):  # one lock order for every group
        graph = await load_graph(conn, item.step.flow_id, item.step.flow_version)
        txn = RunTxn(conn, {}, key=item.step.run_id)
        chain = chain_plan_of(graph, item.step, item.branch, item.eager) if one_call else None
        # a one-call member's successors are its plan's; the others' ready move is planned here
        ready = () if chain is not None else ready_on_success(graph, item.step.node_id, item.branch)
        members.append(_Member(item, graph, txn, ready, chain))
    try:
        outcome = await _commit(conn, members, many)
    except psycopg.Error as exc:
        await rollback(conn)
        if isinstance(exc, psycopg.errors.UndefinedFunction) and "_many" in str(exc):
            log.warning("step_commit_success_many is missing (migration 0029): one per member")
            _MANY["enabled"] = False
        raise GroupFailed(f"group of {len(items)} rolled back: {exc!r}") from exc
    except BaseException:
        await rollback(conn)
        raise
    by_run = {m.item.step.run_id: outcome[i] for i, m in enumerate(members)}
    return [by_run[run] for run in runs]


async def _commit(
    conn: psycopg.AsyncConnection[Any], members: list[_Member], many: bool
) -> list[Committed | LostRace | None]:
    statements: list[tuple[str, dict[str, Any]]] = [("BEGIN", {})]
    calls: list[tuple[str, dict[str, Any]]] = []  # chain members in a row: ONE statement (0029)

    def close_calls() -> None:
        if calls:
            statements.append(onecall.many_statement(calls) if many else calls[0])
            calls.clear()

    for m in members:
        step, item = m.item.step, m.item
        if m.chain is not None:
            args = one_call_args(
                step, item.worker_id, item.branch, item.input_, item.output, item.data
            )
            m.first, m.row = len(statements), len(calls)
            calls.append(onecall.statement(m.chain, **args))
            if not many:
                close_calls()
            continue
        close_calls()
        m.first = len(statements)
        move = m.txn.reading_states_statement(
            "succeed",
            FENCE,
            success_params(step, m.item.worker_id, m.item.branch),
            set_sql=SUCCEED_SET,
            io=(m.item.input_, m.item.output),
            then_ready=m.then_ready,
        )
        statements += [(LOCK_RUN, {"_lock_run": step.run_id}), move]
    close_calls()
    if len(statements) == 2 and all(m.chain is not None for m in members):
        # chain members only: ONE statement, which is its own transaction (the connection is in
        # autocommit): one round trip, no BEGIN/COMMIT, no pipeline. It commits as a whole or not
        # at all, like the two-message group; a crash before it is sent loses the group.
        crashpoint("group_commit.before_one_statement")
        query, args = statements[1]
        cur = await conn.execute(query, args)
        rows = await cur.fetchall()
        return [_chain_outcome(m, rows[m.row]) for m in members]
    results = await send_statements(conn, statements)
    outcome: list[Committed | LostRace | None] = []
    live: list[_Member] = []
    for m in members:
        if m.chain is not None:
            outcome.append(_chain_outcome(m, results[m.first][m.row]))
            continue
        lock, moved = results[m.first : m.first + 2]
        if not lock or not moved:  # no such run, or the fence matched nothing
            outcome.append(
                LostRace(f"run {m.item.step.run_id} not found")
                if not lock
                else lease_lost(m.item.step)
            )
            continue
        m.txn.run = lock[0]
        _, states = m.txn.take_reading_states("succeed", moved, data=m.item.data)
        await advance_run(m.txn, m.graph, states)  # plans in Python; rarely a statement more
        claim_next_eagerly(m.txn, m.graph, m.item.eager, m.item.worker_id)
        live.append(m)
        outcome.append(Committed([], None))  # filled in after the flush
    crashpoint("group_commit.between_statements")
    flushed = await send_statements(
        conn, [*(m.txn.flush_statement() for m in live), ("COMMIT", {})]
    )
    done = iter(flushed)
    for i, m in enumerate(members):
        if m.chain is not None or isinstance(outcome[i], LostRace):
            continue
        rows = next(done)
        m.txn.take_flush(rows[0])
        outcome[i] = Committed(m.txn.outbox, next_step(m.txn))
    return outcome


def _chain_outcome(m: _Member, row: dict[str, Any]) -> Committed | LostRace | None:
    assert m.chain is not None
    done = onecall.take(m.item.step.run_id, row)
    if done.outcome == "general":
        return None
    try:
        return Committed(*one_call_outcome(m.item.step, done, m.chain.claim))
    except LostRace as exc:
        return exc


async def send_statements(
    conn: psycopg.AsyncConnection[Any], statements: list[tuple[str, dict[str, Any]]]
) -> list[list[dict[str, Any]]]:
    """Statements of the open transaction in one message (a pipeline; one by one with
    DB_PIPELINE=0); each statement's rows (none for BEGIN/COMMIT)."""
    if pipeline_enabled():
        async with conn.pipeline():
            curs = [await conn.execute(q, a) for q, a in statements]
    else:
        curs = [await conn.execute(q, a) for q, a in statements]
    return [await c.fetchall() if c.description is not None else [] for c in curs]
