"""One checkpoint transaction of one run: the run row lock, run moves, step moves, events, outbox.

Every engine transition opens `async with run_transaction(conn, run_id) as txn:` which begins a
transaction and locks the run row (`SELECT ... FOR UPDATE`), serializing all transitions of that run
(so a join cannot fire twice or never). Inside, `txn.move_steps()` issues guarded UPDATEs (the source
states come from `engine/states.py`), `txn.move_run()` checks the run machine, and `txn.event()` /
`txn.dispatch()` queue event-log and outbox rows. `flush()` writes them all before COMMIT in one
statement (run row, events, NOTIFY, outbox): events get gapless `seq` numbers from `runs.event_seq`,
and `txn.outbox` lists the committed messages to publish. Round trips are the hot path's cost, so
`move_steps(io=...)` can upsert the payload row and `move_steps_reading_states()` can return the run's
step states (for `advance_run`) in the same statement as the move.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
from psycopg import AsyncClientCursor
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from flowstudio.engine.planner import StepState
from flowstudio.engine.states import RUN_TERMINAL, run_move, step_move

NOTIFY_CHANNEL = "fs_run_events"  # payload `{run_id}:{last seq}`, sent at COMMIT


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
    run: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    to_dispatch: list[tuple[int, int]] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    run_updates: dict[str, Any] = field(default_factory=dict)
    ready_nodes: dict[int, str] = field(default_factory=dict)  # step id -> node id, made ready here
    eager: EagerClaimSpec | None = None  # a claim to run inside flush (set by `claim_at_flush`)
    claimed: dict[str, Any] | None = None  # after flush: the row the eager claim moved
    claimed_context: list[dict[str, Any]] = field(default_factory=list)  # and the context it read

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

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
        rows, _ = await self._move(trigger, where, params, set_sql, data, io, read_states=False)
        return rows

    async def move_steps_reading_states(
        self,
        trigger: str,
        where: str,
        params: dict[str, Any],
        *,
        set_sql: str = "",
        data: Any = None,
        io: tuple[Any, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, StepState]]:
        """`move_steps`, plus the run's top-level step states as they are after the move, read in the
        same statement: what `advance_run` needs next, without another round trip. The statement's
        snapshot predates its own UPDATE, so the moved rows are patched in; nothing else can change
        this run's steps meanwhile (the run row is locked)."""
        return await self._move(trigger, where, params, set_sql, data, io, read_states=True)

    async def _move(
        self,
        trigger: str,
        where: str,
        params: dict[str, Any],
        set_sql: str,
        data: Any,
        io: tuple[Any, Any] | None,
        *,
        read_states: bool,
    ) -> tuple[list[dict[str, Any]], dict[str, StepState]]:
        sources, dest = step_move(trigger)
        extra = f", {set_sql}" if set_sql else ""
        if len(sources) == 1:  # the old status is known: no self-join needed to report it
            join, on, old_status = "", "", "%(_source)s::text"
        else:
            join, on, old_status = "FROM steps old", "old.id = s.id AND", "old.status"
        query = f"""UPDATE steps s SET status = %(dest)s{extra}
                {join}
                WHERE {on} s.run_id = %(run_id)s AND s.status = ANY(%(sources)s)
                  AND ({where})
                RETURNING s.id, s.node_id, s.item_index, s.attempt, s.max_attempts, s.node_type,
                          s.branch, {old_status} AS from_status"""
        args = {**params, "dest": dest, "run_id": self.run["id"], "sources": sources}
        args["_source"] = sources[0]
        if io is not None or read_states:
            ctes = [f"moved AS ({query})"]
            select = "SELECT m.* FROM moved m"
            if io is not None:
                ctes.append("""io AS (INSERT INTO step_io (step_id, input, output)
                              SELECT id, %(_io_input)s, %(_io_output)s FROM moved
                              ON CONFLICT (step_id) DO UPDATE
                              SET input = EXCLUDED.input, output = EXCLUDED.output)""")
                args["_io_input"], args["_io_output"] = Jsonb(io[0]), Jsonb(io[1])
            if read_states:
                ctes.append(
                    """st AS (SELECT array_agg(node_id) AS st_nodes, array_agg(status) AS st_status,
                                     array_agg(branch) AS st_branch
                              FROM steps WHERE run_id = %(run_id)s AND item_index = 0)"""
                )
                select = "SELECT m.*, st.* FROM moved m, st"
            query = f"WITH {', '.join(ctes)} {select}"
        cur = await self.conn.execute(query, args)
        rows = await cur.fetchall()
        states: dict[str, StepState] = {}
        if read_states and rows:
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
        for row in rows:
            self.event(
                "step",
                step_id=row["id"],
                node_id=row["node_id"],
                item_index=row["item_index"],
                attempt=row["attempt"],
                from_status=row["from_status"],
                to_status=dest,
                data=data,
            )
            if dest == "ready":
                self.dispatch(row["id"], row["attempt"])
                self.ready_nodes[row["id"]] = row["node_id"]
        return rows, states

    def claim_at_flush(
        self, step_id: int, worker_id: str, lease_seconds: float, context_nodes: list[str]
    ) -> None:
        """Eager dispatch: instead of an outbox row, claim the step this transaction made ready
        (ready -> running, leased to `worker_id`) inside the flush statement, and read the state and
        output of `context_nodes` (what the step's context needs) there too: no extra round trip.
        After the flush, `claimed` holds the moved row and `claimed_context` those rows."""
        token = dict(self.to_dispatch)[step_id]
        self.to_dispatch = [(s, t) for s, t in self.to_dispatch if s != step_id]
        self.eager = EagerClaimSpec(step_id, token, worker_id, lease_seconds, context_nodes)
        sources, dest = step_move("claim")
        node_id = self.ready_nodes[step_id]
        self.event(
            "step",
            step_id=step_id,
            node_id=node_id,
            item_index=0,
            attempt=token + 1,
            from_status=sources[0],
            to_status=dest,
        )

    async def flush(self) -> None:
        """Write the run row, the events, the NOTIFY and the outbox rows in ONE statement.

        Events take the seqs `event_seq - n + 1 .. event_seq` of the incremented counter (gapless
        under the run lock); the data-modifying CTEs all run exactly once."""
        n = len(self.events)
        sets = ["event_seq = event_seq + %(n)s", "updated_at = now()"]
        params: dict[str, Any] = {
            "id": self.run["id"],
            "n": n,
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
        claim_cte, claim_cols = "", ""
        if self.eager is not None:
            claim_cte, claim_cols = CLAIM_CTE, CLAIM_COLUMNS
            sources, dest = step_move("claim")
            params.update(
                cl_step=self.eager.step_id,
                cl_token=self.eager.token,
                cl_owner=self.eager.worker_id,
                cl_lease=self.eager.lease_seconds,
                cl_ctx=self.eager.context_nodes,
                cl_sources=sources,
                cl_dest=dest,
            )
        cur = await self.conn.execute(
            f"""WITH r AS (
                    UPDATE runs SET {', '.join(sets)} WHERE id = %(id)s RETURNING event_seq
                ), ev AS (
                    INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index,
                                            attempt, from_status, to_status, data)
                    SELECT %(id)s, r.event_seq - %(n)s::int + e.ord::int, e.ev->>'kind',
                           (e.ev->>'step_id')::bigint, e.ev->>'node_id',
                           (e.ev->>'item_index')::int, (e.ev->>'attempt')::int,
                           e.ev->>'from_status', e.ev->>'to_status', e.ev->'data'
                    FROM r, jsonb_array_elements(%(events)s) WITH ORDINALITY AS e(ev, ord)
                ), ob AS (
                    INSERT INTO outbox (run_id, step_id, token)
                    SELECT %(id)s, u.s, u.t
                    FROM unnest(%(ob_steps)s::bigint[], %(ob_tokens)s::int[]) AS u(s, t)
                    RETURNING id, step_id, token
                ), nt AS (
                    SELECT pg_notify(%(channel)s, %(id)s::text || ':' || r.event_seq)
                    FROM r WHERE %(n)s::int > 0
                ){claim_cte}
                SELECT r.event_seq, (SELECT count(*) FROM nt) AS notified,
                       ARRAY(SELECT ob.id FROM ob ORDER BY ob.id) AS ob_ids,
                       ARRAY(SELECT ob.step_id FROM ob ORDER BY ob.id) AS ob_steps,
                       ARRAY(SELECT ob.token FROM ob ORDER BY ob.id) AS ob_tokens{claim_cols}
                FROM r""",
            params,
        )
        row = await cur.fetchone()
        assert row is not None
        if self.to_dispatch:
            self.outbox = [
                OutboxMessage(i, self.run_id, s, t)
                for i, s, t in zip(row["ob_ids"], row["ob_steps"], row["ob_tokens"], strict=True)
            ]
        if self.eager is not None:
            if row["cl_row"] is None:  # impossible under the run lock: the step was made ready here
                raise RuntimeError(f"eager claim of step {self.eager.step_id} matched no row")
            self.claimed, self.claimed_context = row["cl_row"], row["cl_ctx"]
            self.eager = None
        self.events.clear()
        self.to_dispatch.clear()
        self.run_updates.clear()


CLAIM_CTE = """, cl AS (
                    UPDATE steps s SET status = %(cl_dest)s, attempt = s.attempt + 1,
                           lease_owner = %(cl_owner)s,
                           lease_expires_at = now() + make_interval(secs => %(cl_lease)s),
                           started_at = coalesce(s.started_at, clock_timestamp()), due_at = NULL
                    WHERE s.id = %(cl_step)s AND s.run_id = %(id)s AND s.attempt = %(cl_token)s
                      AND s.status = ANY(%(cl_sources)s)
                    RETURNING s.id, s.node_id, s.item_index, s.node_type, s.attempt, s.max_attempts
                ), cx AS (
                    SELECT s.node_id, s.status, s.branch, io.output
                    FROM steps s LEFT JOIN step_io io ON io.step_id = s.id
                    WHERE s.run_id = %(id)s AND s.item_index = 0 AND s.node_id = ANY(%(cl_ctx)s)
                )"""
CLAIM_COLUMNS = """,
                       (SELECT to_jsonb(cl) FROM cl) AS cl_row,
                       (SELECT coalesce(jsonb_agg(to_jsonb(cx)), '[]') FROM cx) AS cl_ctx"""
RUN_COLUMNS = "id, status, flow_id, flow_version, owner_id, inputs, tweaks, event_seq"


LOCK_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s FOR UPDATE"


@asynccontextmanager
async def run_transaction(conn: psycopg.AsyncConnection[Any], run_id: Any) -> AsyncIterator[RunTxn]:
    """Begin, lock the run row, yield the RunTxn, flush, commit. Raises LostRace if no such run.

    On an idle (autocommit) connection, BEGIN and the row lock go in one simple-protocol message
    (client-side binding), saving a round trip on every transition; inside an outer transaction
    (`start_run`) it is a savepoint, as psycopg's `transaction()` makes it."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        async with conn.transaction():
            cur = await conn.execute(LOCK_RUN, (run_id,))
            txn = RunTxn(conn, await _locked_run(cur, run_id))
            yield txn
            await txn.flush()
        return
    try:
        async with AsyncClientCursor(conn, row_factory=dict_row) as cur:
            await cur.execute("BEGIN; " + LOCK_RUN, (run_id,), prepare=False)
            cur.nextset()
            txn = RunTxn(conn, await _locked_run(cur, run_id))
        yield txn
        await txn.flush()
    except BaseException:
        await _rollback(conn)
        raise
    await conn.execute("COMMIT")


async def _locked_run(cur: psycopg.AsyncCursor[Any], run_id: Any) -> dict[str, Any]:
    run = await cur.fetchone()
    if run is None:
        raise LostRace(f"run {run_id} not found")
    return dict(run)


async def _rollback(conn: psycopg.AsyncConnection[Any]) -> None:
    """End a failed (or cancelled) run transaction; shielded so a cancellation cannot skip it. A
    connection that cannot roll back is broken: the pool discards it."""
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(10), suppress(psycopg.Error):
        await conn.execute("ROLLBACK")
