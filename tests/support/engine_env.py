"""An in-process engine environment: drive runs through the engine's own functions, no processes.

Like Temporal's `ActivityEnvironment` for one unit of work, `EngineEnv` plays every caller of the
engine on one database (a clone of the migrated template, tests/support/templatedb.py): the API
(`start`, `cancel`, `resume`, `fork`, `signal`: the engine calls its routes make), the worker
(`claim` -> `heartbeat` -> `succeed` | `commit` (eager, one call or not) | `fail` | `wait` |
`expand` | `release`, with a worker id as the lease owner) and the orchestrator (`fire_timers`,
`reap`). There is no broker: the outbox rows a relay would publish stay in the table (`outbox`). Time is moved by hand (`make_due`,
`expire_lease`), never slept for. Reads (`statuses`, `steps`, `items`, `run`, `events`, `snapshot`)
and `check_log` (the event-log checks of tests/support/checks.py) assert the state. Only this file
calls the engine (tests import just its exception types), so when the engine's entry points move,
the tier changes in one place.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import psycopg
from psycopg.rows import dict_row

from flowstudio.engine import batches, checkpoint, children, claim, control, recovery
from flowstudio.engine.advance import cancel_run
from flowstudio.engine.checkpoint import ClaimedStep, EagerClaim, NextStep
from flowstudio.engine.flowcache import load_graph
from flowstudio.engine.runtxn import run_transaction
from flowstudio.flows.validate import validate_definition
from flowstudio.store import flows as flow_store
from flowstudio.store import runs as run_store
from flowstudio.worker.context import context_nodes
from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.templatedb import TRIES, backoff, busy, connect_retrying

AConn = psycopg.AsyncConnection[dict[str, Any]]
WORKER = "worker-a"


@dataclass
class EngineEnv:
    conn: AConn
    url: str
    owner_id: str

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[EngineEnv]:
        for attempt in range(TRIES):
            try:
                conn = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, row_factory=dict_row
                )
                break
            except psycopg.OperationalError as exc:
                if not busy(exc) or attempt == TRIES - 1:
                    raise
                await anyio.sleep(backoff(attempt))
        try:
            cur = await conn.execute(
                "INSERT INTO users (email, name, roles) VALUES (%s, 'engine', ARRAY['editor'])"
                " RETURNING id",
                (f"engine-{uuid.uuid4().hex[:8]}@example.invalid",),
            )
            row = await cur.fetchone()
            assert row is not None
            yield cls(conn, url, str(row["id"]))
        finally:
            await conn.close()

    # --- the API's side -------------------------------------------------------------------
    async def create_flow(self, definition: dict[str, Any]) -> str:
        _, errors = validate_definition(definition)
        assert not errors, errors
        row = await flow_store.create_flow(
            self.conn, owner_id=self.owner_id, name="engine", description="", definition=definition
        )
        return str(row["id"])

    async def start(
        self,
        definition: dict[str, Any],
        inputs: dict[str, Any] | None = None,
        watched_for: float | None = None,
    ) -> str:
        flow_id = await self.create_flow(definition)
        return (await self.start_flow(flow_id, inputs, watched_for=watched_for)).id

    async def start_flow(
        self,
        flow_id: str,
        inputs: dict[str, Any] | None = None,
        key: str | None = None,
        watched_for: float | None = None,
    ) -> checkpoint.StartedRun:
        return await checkpoint.start_run(
            self.conn,
            flow_id=flow_id,
            version=1,
            owner_id=self.owner_id,
            inputs=inputs or {},
            idempotency_key=key,
            watched_for=watched_for,
        )

    async def load_batch(self, flow_id: str, items: list[dict[str, Any]]) -> str:
        """A batch of `items` (each a run's inputs), loaded as the API does: unstarted runs."""
        batch_id = str(uuid.uuid4())
        await batches.load_batch(
            self.conn,
            batch_id=batch_id,
            flow_id=flow_id,
            version=1,
            owner_id=self.owner_id,
            total=len(items),
            items=[json.dumps(item).encode() for item in items],
        )
        return batch_id

    async def batch_runs(self, batch_id: str) -> list[str]:
        """The batch's run ids, in input order."""
        cur = await self.conn.execute(
            "SELECT id FROM runs WHERE batch_id = %s ORDER BY batch_index", (batch_id,)
        )
        return [str(r["id"]) for r in await cur.fetchall()]

    async def cancel(self, run_id: str, reason: str = "cancelled in a test") -> bool:
        async with run_transaction(self.conn, run_id) as txn:
            return await cancel_run(txn, reason)

    async def resume(self, run_id: str) -> str:
        run = await self.run(run_id)
        graph = await load_graph(self.conn, run["flow_id"], run["flow_version"])
        async with run_transaction(self.conn, run_id) as txn:
            assert txn.status in ("failed", "cancelled"), txn.status  # the API answers 409
            await control.resume_run(txn, graph)
        return txn.status

    async def fork(self, run_id: str, from_node: str, inputs: dict[str, Any] | None = None) -> str:
        parent = await self.run(run_id)
        graph = await load_graph(self.conn, parent["flow_id"], parent["flow_version"])
        new_id, _ = await control.fork_run(
            self.conn, parent, graph, from_node, inputs, self.owner_id
        )
        return new_id

    async def signal(self, run_id: str, node_id: str, payload: Any) -> bool:
        run = await self.run(run_id)
        graph = await load_graph(self.conn, run["flow_id"], run["flow_version"])
        async with run_transaction(self.conn, run_id) as txn:
            return await control.deliver_signal(txn, graph, node_id, payload)

    # --- the worker's side ----------------------------------------------------------------
    async def claim(
        self,
        run_id: str,
        node_id: str,
        *,
        item: int = 0,
        worker: str = WORKER,
        token: int | None = None,
    ) -> ClaimedStep:
        """Claim the step (a map's item with `item`) as a worker would on receiving its message
        (token: the attempt the message carries; default the step's current one)."""
        step = await self.step(run_id, node_id, item)
        token = step["attempt"] if token is None else token
        return await self.claim_message(run_id, step["id"], token, worker=worker)

    async def claim_message(
        self, run_id: str, step_id: int, token: int, *, worker: str = WORKER
    ) -> ClaimedStep:
        """Claim as a worker does on receiving the message (run, step, token)."""
        return await claim.claim_step(
            self.conn,
            run_id=run_id,
            step_id=step_id,
            token=token,
            worker_id=worker,
            lease_seconds=30,
        )

    async def succeed(
        self,
        step: ClaimedStep,
        output: Any = None,
        *,
        branch: str | None = None,
        worker: str = WORKER,
    ) -> None:
        await self.commit(step, output, branch=branch, worker=worker)

    async def commit(
        self,
        step: ClaimedStep,
        output: Any = None,
        *,
        branch: str | None = None,
        eager: bool = False,
        one_call: bool = True,
        worker: str = WORKER,
    ) -> tuple[list[tuple[int, int]], NextStep | None]:
        """`succeed` as the worker's hot path calls it: with `eager` the success also claims the
        next step for `worker` (its NextStep is returned), `one_call` as ONE_CALL_COMMIT; returns
        the (step id, token) messages to publish too."""
        outbox, nxt = await checkpoint.commit_success(
            self.conn,
            step,
            worker,
            input_=None,
            output=output,
            branch=branch,
            eager=EagerClaim(30, context_nodes) if eager else None,
            one_call=one_call,
        )
        return [(m.step_id, m.token) for m in outbox], nxt

    async def fail(
        self,
        step: ClaimedStep,
        message: str = "boom",
        *,
        retryable: bool = True,
        worker: str = WORKER,
    ) -> str:
        return await checkpoint.commit_failure(
            self.conn, step, worker, error={"message": message}, retryable=retryable
        )

    async def wait(self, step: ClaimedStep, seconds: float | None, *, signal: bool = False) -> None:
        await checkpoint.commit_wait(
            self.conn,
            step,
            WORKER,
            input_=None,
            output=None,
            seconds=seconds,
            accepts_signal=signal,
        )

    async def heartbeat(self, steps: list[ClaimedStep], *, worker: str = WORKER) -> set[int]:
        """Extend the leases `worker` holds; returns the step ids still held."""
        held = [(s.step_id, s.attempt) for s in steps]
        return await checkpoint.heartbeat(self.conn, worker, held, lease_seconds=30)

    async def expand(self, step: ClaimedStep, items: list[Any]) -> None:
        """Commit a map step's `Expand(items)`: it waits, one step per item."""
        await children.commit_expand(self.conn, step, WORKER, input_=None, items=items)

    async def release(self, step: ClaimedStep) -> None:
        await checkpoint.release_step(self.conn, step, WORKER, "shutting down")

    async def run_node(self, run_id: str, node_id: str, output: Any = None) -> None:
        """Claim and succeed one ready step (a worker that executes it with `output`)."""
        await self.succeed(await self.claim(run_id, node_id), output)

    # --- the orchestrator's side and the clock ------------------------------------------
    async def dispatch_batch(self, batch_id: str, concurrency: int) -> str:
        """One dispatcher pass over the batch (starts runs up to `concurrency` live, finishes the
        batch when nothing is live); returns the batch's status."""
        await batches.dispatch_batch(self.conn, batch_id, concurrency)
        cur = await self.conn.execute("SELECT status FROM batches WHERE id = %s", (batch_id,))
        row = await cur.fetchone()
        assert row is not None, f"no batch {batch_id}"
        return str(row["status"])

    async def fire_timers(self) -> int:
        return len(await recovery.fire_due_timers(self.conn))

    async def next_timer_in(self) -> float | None:
        """How long the orchestrator's timer loop would sleep before its next pass (uncapped)."""
        return await recovery.seconds_to_next_timer(self.conn)

    async def reap(self) -> int:
        return len(await recovery.reap_expired_leases(self.conn, lease_recoveries=5))

    async def make_due(self, run_id: str, node_id: str) -> None:
        """The step's timer (retry backoff, delay) is now due, as if its time had passed."""
        await self.conn.execute(
            "UPDATE steps SET due_at = now() - interval '1 second'"
            " WHERE run_id = %s AND node_id = %s AND due_at IS NOT NULL",
            (run_id, node_id),
        )

    async def expire_lease(self, run_id: str, node_id: str) -> None:
        await self.conn.execute(
            "UPDATE steps SET lease_expires_at = now() - interval '1 second'"
            " WHERE run_id = %s AND node_id = %s AND status = 'running'",
            (run_id, node_id),
        )

    # --- reads and checks -------------------------------------------------------------------
    async def run(self, run_id: str) -> dict[str, Any]:
        run = await run_store.get_run(self.conn, run_id)
        assert run is not None, run_id
        return run

    async def steps(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Top-level steps by node id (map items are left out)."""
        rows = await run_store.get_steps(self.conn, run_id)
        return {r["node_id"]: r for r in rows if r["item_index"] == 0}

    async def step(self, run_id: str, node_id: str, item: int = 0) -> dict[str, Any]:
        rows = await run_store.get_steps(self.conn, run_id)
        (row,) = [r for r in rows if r["node_id"] == node_id and r["item_index"] == item]
        return row

    async def items(self, run_id: str, node_id: str) -> list[str]:
        """The statuses of a map's items, in item order."""
        rows = await run_store.get_steps(self.conn, run_id)
        mine = sorted((r["item_index"], r["status"]) for r in rows if r["node_id"] == node_id)
        return [status for index, status in mine if index > 0]

    async def statuses(self, run_id: str) -> dict[str, str]:
        return {n: s["status"] for n, s in (await self.steps(run_id)).items()}

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        cur = await self.conn.execute(
            "SELECT * FROM run_events WHERE run_id = %s ORDER BY seq", (run_id,)
        )
        return await cur.fetchall()

    async def outbox(self, run_id: str) -> list[tuple[int, int]]:
        """(step id, token) of every message written for the run, oldest first."""
        cur = await self.conn.execute(
            "SELECT step_id, token FROM outbox WHERE run_id = %s ORDER BY id", (run_id,)
        )
        return [(r["step_id"], r["token"]) for r in await cur.fetchall()]

    async def picture(self, rid: str) -> Any:
        """Every row a commit writes, with ids as node ids and clocks as their presence."""
        cur = await self.conn.execute(
            """SELECT s.node_id, s.item_index, s.status, s.attempt, s.max_attempts, s.branch, s.error,
                      s.lease_owner, s.lease_expires_at IS NOT NULL AS leased,
                      s.due_at IS NOT NULL AS due, s.ready_at IS NOT NULL AS readied,
                      s.dispatched_at IS NOT NULL AS dispatched, s.started_at IS NOT NULL AS started,
                      s.finished_at IS NOT NULL AS finished, io.input, io.output
               FROM steps s LEFT JOIN step_io io ON io.step_id = s.id
               WHERE s.run_id = %s ORDER BY s.node_id, s.item_index""",
            (rid,),
        )
        steps = await cur.fetchall()
        cur = await self.conn.execute(
            """SELECT e.seq, e.kind, s.node_id, e.item_index, e.attempt, e.from_status, e.to_status,
                      e.data
               FROM run_events e LEFT JOIN steps s ON s.id = e.step_id
               WHERE e.run_id = %s ORDER BY e.seq""",
            (rid,),
        )
        events = await cur.fetchall()
        cur = await self.conn.execute(
            """SELECT s.node_id, o.token FROM outbox o JOIN steps s ON s.id = o.step_id
               WHERE o.run_id = %s ORDER BY o.id""",
            (rid,),
        )
        outbox = await cur.fetchall()
        run = await self.run(rid)
        return (
            steps,
            events,
            outbox,
            (run["status"], run["event_seq"], run["outputs"], run["error"]),
        )

    async def snapshot(self, run_id: str) -> tuple[Any, ...]:
        """Everything a move could change: run row, steps with payloads, events, outbox."""
        run = await self.run(run_id)
        return (run, await run_store.get_steps(self.conn, run_id), await self.events(run_id))

    def check_log(self, run_id: str) -> None:
        with connect_retrying(self.url) as db:
            assert_event_log_consistent(db, run_id)
            assert_no_double_success(db, run_id)
