"""One checkpoint transaction of one run: the run row lock, run moves, step moves, events, outbox.

Every engine transition opens `async with run_transaction(conn, run_id) as txn:` which begins a
transaction and locks the run row (`SELECT ... FOR UPDATE`), serializing all transitions of that run
(so a join cannot fire twice or never). Inside, `txn.move_steps()` issues guarded UPDATEs (the source
states come from `engine/states.py`), `txn.move_run()` checks the run machine, and `txn.event()` /
`txn.dispatch()` queue event-log and outbox rows. `flush()` writes them all in one statement (run row,
events, NOTIFY, outbox; SQL text in `engine/txnsql.py`): events get gapless `seq` numbers from
`runs.event_seq`, and `txn.outbox` lists the committed messages to publish.

Round trips are the hot path's cost. `move_steps(io=...)` upserts the payload row and
`move_steps_reading_states()` returns the run's step states (for `advance_run`) in the move's
statement. On an idle connection the transaction is sent as few messages as possible (psycopg
pipelines of prepared statements; DB_PIPELINE=0 sends them one by one): `BEGIN; lock` goes with the
first move when the caller asks for `defer_lock` (the move then sees the locked state: it is a later
statement with its own snapshot), and the flush carries the COMMIT. `claim_at_flush()` (eager dispatch) claims the next step inside the flush statement.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from flowstudio.engine.planner import StepState
from flowstudio.engine.states import RUN_TERMINAL, run_move, step_move
from flowstudio.engine.txnsql import LOCK_RUN, READY_SET, READY_WHERE, flush_sql, move_sql
from flowstudio.store.db import pipeline_enabled

log = logging.getLogger(__name__)
# payload `{run_id}:{last seq}`, sent at COMMIT; `{run_id}:{last seq}:{status}` when the run ended
NOTIFY_CHANNEL = "fs_run_events"
# where + set of the move that makes pending nodes ready (`advance_run`)
READY_MOVE = (READY_WHERE, READY_SET)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    run_id: str
    step_id: int
    token: int


@dataclass(frozen=True)
class EagerClaimSpec:
    step_id: int
    token: int
    worker_id: str
    lease_seconds: float
    context_nodes: list[str]


class LostRace(Exception):
    """The row was not in the expected state (already moved, cancelled, lease lost): nothing changed."""


@dataclass
class RunTxn:
    conn: psycopg.AsyncConnection[Any]
    run: dict[str, Any]  # the locked run row ({} while the lock is still to be sent)
    key: Any = None  # the run id as the caller gave it
    lock_pending: bool = False  # BEGIN + lock not sent yet: they go with the next statement
    one_message_commit: bool = False  # flush sends its COMMIT too (not inside an outer transaction)
    events: list[dict[str, Any]] = field(default_factory=list)
    to_dispatch: list[tuple[int, int]] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    run_updates: dict[str, Any] = field(default_factory=dict)
    ready_nodes: dict[int, str] = field(default_factory=dict)  # step id -> node id, made ready here
    eager: EagerClaimSpec | None = None  # a claim to run inside flush (set by `claim_at_flush`)
    claimed: dict[str, Any] | None = None  # after flush: the row the eager claim moved
    claimed_context: list[dict[str, Any]] = field(default_factory=list)  # and the context it read
    # a claim's flush reads these nodes' state and output too (the claimed step's context); after
    # the flush they are in `context_rows`
    read_context: list[str] | None = None
    context_rows: list[dict[str, Any]] | None = None

    @property
    def run_id(self) -> str:
        return str(self.run["id"]) if self.run else str(self.key)

    @property
    def status(self) -> str:
        return str(self.run["status"])

    @property
    def terminal(self) -> bool:
        return self.status in RUN_TERMINAL

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append({"kind": kind, **fields})

    def dispatch(self, step_id: int, token: int) -> None:
        self.to_dispatch.append((step_id, token))

    def move_run(self, trigger: str, **updates: Any) -> bool:
        """Move the run (in memory until flush); False if the machine does not allow it from here."""
        sources, dest = run_move(trigger)
        if self.status not in sources:
            return False
        self.event("run", from_status=self.status, to_status=dest, data=updates.get("error"))
        self.run["status"] = dest
        self.run_updates["status"] = dest
        self.run_updates.update(updates)
        return True

    async def move_steps(
        self,
        trigger: str,
        where: str,
        params: dict[str, Any],
        *,
        set_sql: str = "",
        data: Any = None,
        io: tuple[Any, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Guarded move of this run's steps matching `where`; returns moved rows with `from_status`.

        `io=(input, output)` also upserts the moved steps' payload row in the same statement."""
        statement = self._move_statement(trigger, where, params, set_sql, io)
        (rows,) = await self._execute_many([statement])
        self._log_moves(rows, step_move(trigger)[1], data)
        return rows

    def move_statement(
        self, trigger: str, where: str, params: dict[str, Any], *, set_sql: str = ""
    ) -> tuple[str, dict[str, Any]]:
        """The statement of `move_steps` (sent by a group claim in its shared pipeline); its rows
        go to `take_moves`."""
        return self._move_statement(trigger, where, params, set_sql)

    def take_moves(self, trigger: str, rows: list[dict[str, Any]]) -> None:
        """Log what the statement of `move_statement` moved (`rows`, its result)."""
        self._log_moves(rows, step_move(trigger)[1], None)

    # the same parameters as `move_steps` on purpose (a drop-in for the hot path); two methods so
    # that each keeps a precise return type
    async def move_steps_reading_states(
        self,
        trigger: str,
        where: str,
        params: dict[str, Any],
        *,
        set_sql: str = "",
        data: Any = None,
        io: tuple[Any, Any] | None = None,
        then_ready: Sequence[str] = (),
    ) -> tuple[list[dict[str, Any]], dict[str, StepState]]:
        """`move_steps`, plus the run's top-level step states as they are after the move, read in the
        same statement: what `advance_run` needs next, without another round trip. The statement's
        snapshot predates its own UPDATE, so the moved rows are patched in; nothing else can change
        this run's steps meanwhile (the run row is locked).

        `then_ready`: pending nodes known to become ready once this move happened (a success whose
        successors wait on nothing else: `planner.ready_on_success`); their guarded ready move is
        part of the same statement (it happens only if this move did) and shows in the returned
        states."""
        statement = self.reading_states_statement(
            trigger, where, params, set_sql=set_sql, io=io, then_ready=then_ready
        )
        results = await self._execute_many([statement])
        return self.take_reading_states(trigger, results[0], data=data)

    def reading_states_statement(
        self,
        trigger: str,
        where: str,
        params: dict[str, Any],
        *,
        set_sql: str = "",
        io: tuple[Any, Any] | None = None,
        then_ready: Sequence[str] = (),
    ) -> tuple[str, dict[str, Any]]:
        """The statement of `move_steps_reading_states` (sent by it, or by a group commit in its
        shared pipeline)."""
        query, args = self._move_statement(
            trigger, where, params, set_sql, io, read_states=True, then_ready=bool(then_ready)
        )
        if then_ready:
            (source,), dest = step_move("ready")
            args.update(nodes=list(then_ready), rd_source=source, rd_dest=dest)
        return query, args

    def take_reading_states(
        self, trigger: str, rows: list[dict[str, Any]], *, data: Any = None
    ) -> tuple[list[dict[str, Any]], dict[str, StepState]]:
        """Log what the statement of `reading_states_statement` moved (`rows`, its result); the
        run's states after it."""
        dest = step_move(trigger)[1]
        ready = (rows[0].pop("rd_rows", None) or []) if rows else []
        for row in rows[1:]:
            row.pop("rd_rows", None)
        states = self._states_of(rows, dest)
        self._log_moves(rows, dest, data)
        if ready:
            ready_dest = step_move("ready")[1]
            self._log_moves(ready, ready_dest, None)
            for row in ready:
                states[row["node_id"]] = StepState(ready_dest, row["branch"])
        return rows, states

    def _move_statement(
        self,
        trigger: str,
        where: str,
        params: dict[str, Any],
        set_sql: str,
        io: tuple[Any, Any] | None = None,
        read_states: bool = False,
        then_ready: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        sources, dest = step_move(trigger)
        query = move_sql(
            set_sql,
            where,
            len(sources) > 1,
            io=io is not None,
            read_states=read_states,
            then_ready=then_ready,
        )
        args = {**params, "dest": dest, "run_id": self.key, "sources": sources}
        args["_source"] = sources[0]
        if io is not None:
            args["_io_input"], args["_io_output"] = Jsonb(io[0]), Jsonb(io[1])
        return query, args

    @staticmethod
    def _states_of(rows: list[dict[str, Any]], dest: str) -> dict[str, StepState]:
        """The `st_*` arrays of a states-reading move, with the moved rows patched in."""
        if not rows:
            return {}
        first = rows[0]
        states = {
            node: StepState(status, branch)
            for node, status, branch in zip(
                first["st_nodes"] or [],
                first["st_status"] or [],
                first["st_branch"] or [],
                strict=True,
            )
        }
        for row in rows:
            for key in ("st_nodes", "st_status", "st_branch"):
                del row[key]
            if row["item_index"] == 0:
                states[row["node_id"]] = StepState(dest, row["branch"])
        return states

    def step_event(
        self, row: dict[str, Any], from_status: str | None, to_status: str, data: Any
    ) -> None:
        """The event row of one step move (`row`: id, node_id, item_index, attempt)."""
        self.event(
            "step",
            step_id=row["id"],
            node_id=row["node_id"],
            item_index=row["item_index"],
            attempt=row["attempt"],
            from_status=from_status,
            to_status=to_status,
            data=data,
        )

    def _log_moves(self, rows: list[dict[str, Any]], dest: str, data: Any) -> None:
        for row in rows:
            self.step_event(row, row["from_status"], dest, data)
            if dest == "ready":
                self.dispatch(row["id"], row["attempt"])
                self.ready_nodes[row["id"]] = row["node_id"]

    def claim_at_flush(
        self, step_id: int, worker_id: str, lease_seconds: float, context_nodes: list[str]
    ) -> None:
        """Eager dispatch: instead of an outbox row, claim the step this transaction made ready
        (ready -> running, leased to `worker_id`) inside the flush statement, and read the state and
        output of `context_nodes` (what the step's context needs) there too: no extra round trip.
        After the flush, `claimed` holds the moved row and `claimed_context` those rows. The claim's
        event row is written by the same statement, from what the claim really moved."""
        token = dict(self.to_dispatch)[step_id]
        self.to_dispatch = [(s, t) for s, t in self.to_dispatch if s != step_id]
        self.eager = EagerClaimSpec(step_id, token, worker_id, lease_seconds, context_nodes)

    async def _execute_many(
        self, statements: list[tuple[str, dict[str, Any]]]
    ) -> list[list[dict[str, Any]]]:
        """Run statements of the transaction in one message (a pipeline: each still gets its own
        snapshot, so a later one sees what an earlier one did and the lock it waited for). If the
        lock is pending, `BEGIN` and the lock go first and the locked run row is loaded (LostRace if
        there is no such run)."""
        if len(statements) == 1 and not self.lock_pending:
            cur = await self.conn.execute(*statements[0])
            return [await cur.fetchall()]
        pending, self.lock_pending = self.lock_pending, False  # a transaction is open from here
        if pending:
            statements = [("BEGIN", {}), (LOCK_RUN, {"_lock_run": self.key}), *statements]
        if pipeline_enabled():
            async with self.conn.pipeline():
                curs = [await self.conn.execute(q, a) for q, a in statements]
        else:  # one round trip per statement (e.g. behind PgBouncer in transaction mode)
            curs = [await self.conn.execute(q, a) for q, a in statements]
        if pending:
            run = await curs[1].fetchone()
            if run is None:
                raise LostRace(f"run {self.key} not found")
            self.run = run
            curs = curs[2:]
        return [await c.fetchall() for c in curs]

    async def lock(self) -> None:
        """Send the pending BEGIN + lock now (a caller that reads `run` before moving anything)."""
        if self.lock_pending:
            await self._execute_many([])

    async def flush(self) -> None:
        """Write the run row, the events, the NOTIFY and the outbox rows in ONE statement (with the
        COMMIT in the same message when this is the outer transaction).

        Events take the seqs `event_seq - n + 1 .. event_seq` of the incremented counter (gapless
        under the run lock); the data-modifying CTEs all run exactly once."""
        await self.lock()
        query, params = self.flush_statement()
        if self.one_message_commit and pipeline_enabled():
            async with self.conn.pipeline():
                cur = await self.conn.execute(query, params)
                await self.conn.execute("COMMIT")
        else:
            cur = await self.conn.execute(query, params)
            if self.one_message_commit:
                await self.conn.execute("COMMIT")
        row = await cur.fetchone()
        assert row is not None
        self.take_flush(row)

    def flush_statement(self) -> tuple[str, dict[str, Any]]:
        """The flush statement and its parameters (the run row must be locked and loaded)."""
        sets = ["updated_at = now()"]
        params: dict[str, Any] = {
            "id": self.run["id"],
            "n": len(self.events),
            "events": Jsonb([{k: v for k, v in e.items() if v is not None} for e in self.events]),
            "ob_steps": [s for s, _ in self.to_dispatch],
            "ob_tokens": [t for _, t in self.to_dispatch],
            "channel": NOTIFY_CHANNEL,
        }
        for key, value in self.run_updates.items():
            if key in ("outputs", "error") and value is not None:
                value = Jsonb(value)
            if key in ("started_at", "finished_at") and value is not None:
                sets.append(f"{key} = coalesce({key}, clock_timestamp())")
                continue
            sets.append(f"{key} = %({key})s")
            params[key] = value
        eager = self.eager
        if eager is not None:
            sources, dest = step_move("claim")
            params.update(
                cl_step=eager.step_id,
                cl_token=eager.token,
                cl_owner=eager.worker_id,
                cl_lease=eager.lease_seconds,
                ctx_run=self.run["id"],
                ctx_nodes=eager.context_nodes,
                cl_sources=sources,
                cl_from=sources[0],
                cl_dest=dest,
            )
        if self.read_context is not None:
            params["rc_nodes"] = self.read_context
        read = self.read_context is not None
        return flush_sql(sets, claim=eager is not None, read_context=read), params

    def take_flush(self, row: dict[str, Any]) -> None:
        """Read the flush statement's result row (outbox ids, eager claim) and reset the queues."""
        if self.to_dispatch:
            self.outbox = [
                OutboxMessage(i, self.run_id, s, t)
                for i, s, t in zip(row["ob_ids"], row["ob_steps"], row["ob_tokens"], strict=True)
            ]
        eager = self.eager
        if eager is not None:
            self.eager = None
            self.claimed, self.claimed_context = row["cl_row"], row["cl_ctx"]
            if self.claimed is None:  # cannot happen under the run lock; redispatch covers it
                log.error("eager claim of step %s matched no row", eager.step_id)
        if self.read_context is not None:
            self.read_context, self.context_rows = None, row["rc_rows"]
        self.events.clear()
        self.to_dispatch.clear()
        self.run_updates.clear()


@asynccontextmanager
async def run_transaction(
    conn: psycopg.AsyncConnection[Any], run_id: Any, *, defer_lock: bool = False
) -> AsyncIterator[RunTxn]:
    """Begin, lock the run row, yield the RunTxn, flush, commit. Raises LostRace if no such run.

    On an idle (autocommit) connection this is the fast path: `BEGIN; lock` is one message (or,
    with `defer_lock`, goes with the body's first move; such a body must move a step before it
    reads `txn.run`, or call `await txn.lock()`), and the flush carries the COMMIT. Inside an outer
    transaction (`start_run`) it is a savepoint, as psycopg's `transaction()` makes it."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        async with conn.transaction():
            cur = await conn.execute(LOCK_RUN, {"_lock_run": run_id})
            run = await cur.fetchone()
            if run is None:
                raise LostRace(f"run {run_id} not found")
            txn = RunTxn(conn, run, key=run_id)
            yield txn
            await txn.flush()
        return
    txn = RunTxn(conn, {}, key=run_id, lock_pending=True, one_message_commit=True)
    try:
        if not defer_lock:
            await txn.lock()
        yield txn
        if txn.lock_pending and not (txn.events or txn.run_updates):
            return  # the body sent nothing: no transaction was opened
        await txn.flush()  # ... and COMMIT
    except BaseException:
        await rollback(conn)
        raise


async def rollback(conn: psycopg.AsyncConnection[Any]) -> None:
    """End a failed (or cancelled) run transaction; shielded so a cancellation cannot skip it. A
    connection that cannot roll back is broken: the pool discards it."""
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(10), suppress(psycopg.Error):
        await conn.execute("ROLLBACK")
