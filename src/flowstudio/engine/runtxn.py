"""One checkpoint transaction of one run: the run row lock, run moves, step moves, events, outbox.

Every engine transition opens `async with run_transaction(conn, run_id) as txn:` which begins a
transaction and locks the run row (`SELECT ... FOR UPDATE`), serializing all transitions of that run
(so a join cannot fire twice or never). Inside, `txn.move_steps()` issues guarded UPDATEs (the source
states come from `engine/states.py`), `txn.move_run()` checks the run machine, and `txn.event()` /
`txn.dispatch()` queue event-log and outbox rows. `flush()` writes them all before COMMIT: events get
gapless `seq` numbers from `runs.event_seq`, and `txn.outbox` lists the committed messages to publish.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flowstudio.engine.states import RUN_TERMINAL, run_move, step_move


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    run_id: str
    step_id: int
    token: int


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
    ) -> list[dict[str, Any]]:
        """Guarded move of this run's steps matching `where`; returns moved rows with `from_status`."""
        sources, dest = step_move(trigger)
        extra = f", {set_sql}" if set_sql else ""
        cur = await self.conn.execute(
            f"""UPDATE steps s SET status = %(dest)s{extra}
                FROM steps old
                WHERE old.id = s.id AND s.run_id = %(run_id)s AND s.status = ANY(%(sources)s)
                  AND ({where})
                RETURNING s.id, s.node_id, s.item_index, s.attempt, s.max_attempts, s.node_type,
                          old.status AS from_status""",
            {**params, "dest": dest, "run_id": self.run["id"], "sources": sources},
        )
        rows = await cur.fetchall()
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
        return rows

    async def flush(self) -> None:
        n = len(self.events)
        sets = ["event_seq = event_seq + %(n)s", "updated_at = now()"]
        params: dict[str, Any] = {"id": self.run["id"], "n": n}
        for key, value in self.run_updates.items():
            if key in ("outputs", "error"):
                value = Jsonb(value)
            if key in ("started_at", "finished_at"):
                sets.append(f"{key} = coalesce({key}, now())")
                continue
            sets.append(f"{key} = %({key})s")
            params[key] = value
        cur = await self.conn.execute(
            f"UPDATE runs SET {', '.join(sets)} WHERE id = %(id)s RETURNING event_seq", params
        )
        row = await cur.fetchone()
        assert row is not None
        last = row["event_seq"]
        if n:
            first = last - n + 1
            async with self.conn.cursor() as c:
                await c.executemany(
                    """INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index,
                           attempt, from_status, to_status, data)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [
                        (
                            self.run["id"],
                            first + i,
                            e["kind"],
                            e.get("step_id"),
                            e.get("node_id"),
                            e.get("item_index"),
                            e.get("attempt"),
                            e.get("from_status"),
                            e.get("to_status"),
                            Jsonb(e["data"]) if e.get("data") is not None else None,
                        )
                        for i, e in enumerate(self.events)
                    ],
                )
            await self.conn.execute(
                "SELECT pg_notify('fs_run_events', %s)", (f"{self.run['id']}:{last}",)
            )
        if self.to_dispatch:
            cur = await self.conn.execute(
                """INSERT INTO outbox (run_id, step_id, token)
                   SELECT %s, s, t FROM unnest(%s::bigint[], %s::int[]) AS u(s, t)
                   RETURNING id, step_id, token""",
                (
                    self.run["id"],
                    [s for s, _ in self.to_dispatch],
                    [t for _, t in self.to_dispatch],
                ),
            )
            self.outbox = [
                OutboxMessage(r["id"], self.run_id, r["step_id"], r["token"])
                for r in await cur.fetchall()
            ]
        self.events.clear()
        self.to_dispatch.clear()
        self.run_updates.clear()


RUN_COLUMNS = "id, status, flow_id, flow_version, owner_id, inputs, event_seq"


@asynccontextmanager
async def run_transaction(conn: psycopg.AsyncConnection[Any], run_id: Any) -> AsyncIterator[RunTxn]:
    """Begin, lock the run row, yield the RunTxn, flush, commit. Raises LostRace if no such run."""
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s FOR UPDATE", (run_id,)
        )
        run = await cur.fetchone()
        if run is None:
            raise LostRace(f"run {run_id} not found")
        txn = RunTxn(conn, run)
        yield txn
        await txn.flush()
