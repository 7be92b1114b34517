"""CPU time spent by the engine processes and by their PostgreSQL backends during a bench phase.

`CpuMeter.start(conn, engine_pids, dbname)` snapshots the CPU seconds (user + system, from /proc) of
the orchestrator/worker processes and of every PostgreSQL backend connected to the bench database;
`meter.stop(conn)` returns the `CpuUsage` used since. Wall-clock figures swing with whatever else
runs on the machine; CPU per step does much less, so it is what to compare between engine versions.
Where /proc is missing (not Linux) or PostgreSQL is on another host, the figures are None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psycopg

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


@dataclass(frozen=True)
class CpuUsage:
    engine_s: float | None
    postgres_s: float | None


async def backend_pids(conn: psycopg.AsyncConnection[Any], dbname: str) -> list[int]:
    cur = await conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    )
    return [r["pid"] for r in await cur.fetchall()]


def _snapshot(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        t = cpu_seconds(pid)
        if t is not None:
            out[pid] = t
    return out


class CpuMeter:
    def __init__(self, engine_pids: list[int], dbname: str) -> None:
        self.engine_pids = engine_pids
        self.dbname = dbname
        self.engine0: dict[int, float] = {}
        self.pg0: dict[int, float] = {}

    async def start(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.engine0 = _snapshot(self.engine_pids)
        self.pg0 = _snapshot(await backend_pids(conn, self.dbname))

    async def stop(self, conn: psycopg.AsyncConnection[Any]) -> CpuUsage:
        engine1 = _snapshot(self.engine_pids)
        pg1 = _snapshot(await backend_pids(conn, self.dbname))
        engine = (
            sum(t - self.engine0.get(pid, 0.0) for pid, t in engine1.items()) if engine1 else None
        )
        # a backend that appeared meanwhile (a pool grew) counts from zero; one that left is lost
        postgres = sum(t - self.pg0.get(pid, 0.0) for pid, t in pg1.items()) if pg1 else None
        return CpuUsage(engine, postgres)
