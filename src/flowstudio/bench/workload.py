"""The bench workload: a K-step no-op chain, runs started as the API does, timings read from the DB.

`create_chain_flow(conn, steps)` inserts a user and a validated flow `input -> noop x (K-2) ->
output`. `Driver` holds the bench's pool and publisher: `start_runs(n)` starts runs in parallel with
`engine.checkpoint.start_run` and publishes each committed outbox at once (as the API does);
`wait_all()` polls the runs table until all are terminal; `run_sequential(n)` starts one run at a
time and waits for each through LISTEN fs_run_events (each run is started watched, so that its
commits NOTIFY; the NOTIFY of the commit that ends a run names its status: the driver queries only
after a 0.5 s silence, never once per step).
`concurrent_figures()` and `sequential_figures()` turn DB timestamps (runs.created_at/finished_at,
run_events.at) into the figures the report prints, so polling granularity never enters a
measurement.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import psycopg
from psycopg import sql

from flowstudio.bench.sandbox import BenchError
from flowstudio.engine.checkpoint import start_run
from flowstudio.engine.runtxn import NOTIFY_CHANNEL
from flowstudio.engine.states import RUN_TERMINAL, RunStatus
from flowstudio.flows.validate import validate_definition
from flowstudio.nodes import registry
from flowstudio.queue.outbox import OutboxPublisher
from flowstudio.store.db import Pool
from flowstudio.store.flows import create_flow
from flowstudio.store.statuses import sql_value

log = logging.getLogger(__name__)
TERMINAL = list(RUN_TERMINAL)


def chain_definition(steps: int) -> dict[str, Any]:
    """`input -> noop ... -> output` with `steps` nodes in all (a single `noop` when steps == 1)."""
    if steps == 1:
        kinds = [("n1", "noop")]
    else:
        kinds = [("in", "input"), *[(f"noop{i}", "noop") for i in range(1, steps - 1)]]
        kinds.append(("out", "output"))
    nodes = [
        {"id": nid, "type": t, "position": {"x": 200 * i, "y": 0}, "data": {"params": {}}}
        for i, (nid, t) in enumerate(kinds)
    ]
    edges = [
        {"id": f"e{i}", "source": a[0], "sourceHandle": "out", "target": b[0], "targetHandle": "in"}
        for i, (a, b) in enumerate(itertools.pairwise(kinds))
    ]
    return {"nodes": nodes, "edges": edges}


async def create_chain_flow(conn: psycopg.AsyncConnection[Any], steps: int) -> tuple[str, str]:
    """Insert a password-less bench user and the chain flow; returns (owner_id, flow_id)."""
    registry.load_all()
    definition = chain_definition(steps)
    _, errors = validate_definition(definition)
    if errors:
        raise BenchError(f"bench flow is invalid: {errors}")
    cur = await conn.execute(
        "INSERT INTO users (email, name, roles) VALUES (%s, 'bench', ARRAY['editor']) RETURNING id",
        (f"bench-{uuid.uuid4().hex[:8]}@example.invalid",),
    )
    user = await cur.fetchone()
    assert user is not None
    flow = await create_flow(
        conn,
        owner_id=user["id"],
        name=f"bench {steps}-step no-op chain",
        description="flowstudio bench",
        definition=definition,
    )
    return str(user["id"]), str(flow["id"])


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def p50_p99(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 3), "p99": round(percentile(values, 99), 3)}


@dataclass
class ConcurrentFigures:
    runs: int
    succeeded: int
    wall_s: float
    step_transitions: int
    completed_steps: int
    commits: int
    run_latency_ms: list[float]

    @property
    def transitions_per_s(self) -> float:
        return self.step_transitions / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def completed_steps_per_s(self) -> float:
        return self.completed_steps / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class SequentialFigures:
    runs: int
    succeeded: int
    step_gaps_ms: list[float]
    run_latency_ms: list[float]
    dispatch_ms: list[float]  # ready -> running: publish, deliver, claim (~0 when eager)
    work_ms: list[float]  # running -> succeeded: context, execute, commit


class Driver:
    def __init__(
        self,
        pool: Pool,
        publisher: OutboxPublisher,
        owner_id: str,
        flow_id: str,
        check_alive: Callable[[], None],
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.owner_id = owner_id
        self.flow_id = flow_id
        self.check_alive = check_alive

    async def _start_one(
        self, conn: psycopg.AsyncConnection[Any], i: int, watched_for: float | None = None
    ) -> str:
        started = await start_run(
            conn,
            flow_id=self.flow_id,
            version=1,
            owner_id=self.owner_id,
            inputs={"i": i},
            watched_for=watched_for,
        )
        await self.publisher.publish_committed(started.outbox)
        return started.id

    async def start_runs(self, n: int, parallel: int = 8) -> list[str]:
        ids: list[str] = []

        async def starter(indexes: range) -> None:
            async with self.pool.connection() as conn:
                for i in indexes:
                    ids.append(await self._start_one(conn, i))

        async with anyio.create_task_group() as tg:
            for k in range(min(parallel, n)):
                tg.start_soon(starter, range(k, n, parallel))
        return ids

    async def wait_all(self, run_ids: list[str], within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM runs WHERE id = ANY(%s) AND status = ANY(%s)",
                    (run_ids, TERMINAL),
                )
                row = await cur.fetchone()
            done = row["n"] if row else 0
            if done >= len(run_ids):
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"only {done} of {len(run_ids)} runs finished in {within:g}s")
            await anyio.sleep(0.1)

    async def run_sequential(
        self, listen: psycopg.AsyncConnection[Any], n: int, within: float
    ) -> list[str]:
        """One run at a time; the next starts when LISTEN says the previous one is terminal."""
        await listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
        try:
            return await self._run_one_by_one(listen, n, within)
        finally:
            await listen.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))

    async def _run_one_by_one(
        self, listen: psycopg.AsyncConnection[Any], n: int, within: float
    ) -> list[str]:
        ids: list[str] = []
        deadline = time.monotonic() + within
        async with self.pool.connection() as conn:
            for i in range(n):
                run_id = await self._start_one(conn, i, watched_for=within)  # followed live
                ids.append(run_id)
                ended = False  # the NOTIFY that ends a run says so: no query per step
                while not (ended or await self._terminal(conn, run_id)):
                    self.check_alive()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BenchError(f"sequential run {i + 1}/{n} not finished in {within:g}s")
                    async for note in listen.notifies(timeout=min(0.5, left)):
                        run, _, seq_status = note.payload.partition(":")
                        if run == run_id and seq_status.partition(":")[2] in RUN_TERMINAL:
                            ended = True
                            break
        return ids

    async def _terminal(self, conn: psycopg.AsyncConnection[Any], run_id: str) -> bool:
        cur = await conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,))
        row = await cur.fetchone()
        return row is not None and row["status"] in RUN_TERMINAL


# How many of the runs exist and succeeded, their wall time and each one's latency in ms.
RUN_FIGURES = f"""SELECT count(*) AS runs,
           count(*) FILTER (WHERE status = {sql_value(RunStatus.SUCCEEDED)}) AS succeeded,
           extract(epoch FROM max(finished_at) - min(created_at))::float8 AS wall_s,
           array_agg(extract(epoch FROM finished_at - created_at)::float8 * 1000) AS latencies
    FROM runs WHERE id = ANY(%s)"""


async def run_figures(conn: psycopg.AsyncConnection[Any], run_ids: list[str]) -> dict[str, Any]:
    cur = await conn.execute(RUN_FIGURES, (run_ids,))
    row = await cur.fetchone()
    assert row is not None
    return row


async def concurrent_figures(
    conn: psycopg.AsyncConnection[Any], run_ids: list[str], steps: int
) -> ConcurrentFigures:
    runs = await run_figures(conn, run_ids)
    cur = await conn.execute(
        """SELECT count(*) FILTER (WHERE kind = 'step') AS transitions,
                  count(*) FILTER (WHERE kind = 'step' AND to_status = 'succeeded') AS completed,
                  count(DISTINCT xmin::text) AS commits
           FROM run_events WHERE run_id = ANY(%s)""",
        (run_ids,),
    )
    ev = await cur.fetchone()
    assert ev is not None
    # every checkpoint transaction writes event rows: their distinct inserting transaction ids
    # (xmin) count the commits exactly (an eager claim shares its commit with the step before)
    commits = ev["commits"]
    return ConcurrentFigures(
        runs=runs["runs"],
        succeeded=runs["succeeded"],
        wall_s=float(runs["wall_s"] or 0.0),
        step_transitions=ev["transitions"],
        completed_steps=ev["completed"],
        commits=commits,
        run_latency_ms=[float(x) for x in runs["latencies"] or [] if x is not None],
    )


async def sequential_figures(
    conn: psycopg.AsyncConnection[Any], run_ids: list[str]
) -> SequentialFigures:
    """Per-step overhead: the gaps between one step's commit and the next's (the first from the
    run's creation), i.e. claim + context + execute + commit of a no-op step (plus publish and
    deliver when the step came through RabbitMQ rather than eager dispatch)."""
    cur = await conn.execute(
        """SELECT run_id, extract(epoch FROM at)::float8 AS t FROM run_events
           WHERE run_id = ANY(%s)
             AND ((kind = 'run' AND to_status = 'queued')
                  OR (kind = 'step' AND to_status = 'succeeded'))
           ORDER BY run_id, seq""",
        (run_ids,),
    )
    times: dict[str, list[float]] = {}
    for r in await cur.fetchall():
        times.setdefault(str(r["run_id"]), []).append(r["t"])
    gaps = [(b - a) * 1000 for ts in times.values() for a, b in itertools.pairwise(ts)]
    row = await run_figures(conn, run_ids)
    cur = await conn.execute(
        """SELECT step_id, to_status, extract(epoch FROM at)::float8 AS t FROM run_events
           WHERE run_id = ANY(%s) AND kind = 'step' ORDER BY step_id, seq""",
        (run_ids,),
    )
    marks: dict[int, dict[str, float]] = {}
    for r in await cur.fetchall():
        marks.setdefault(r["step_id"], {})[r["to_status"]] = r["t"]
    dispatch = [(m["running"] - m["ready"]) * 1000 for m in marks.values() if len(m) == 3]
    work = [(m["succeeded"] - m["running"]) * 1000 for m in marks.values() if len(m) == 3]
    return SequentialFigures(
        runs=len(run_ids),
        succeeded=row["succeeded"],
        step_gaps_ms=gaps,
        run_latency_ms=[float(x) for x in row["latencies"] or [] if x is not None],
        dispatch_ms=dispatch,
        work_ms=work,
    )
