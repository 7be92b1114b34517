"""Worker liveness through PostgreSQL: fast takeover of the steps of a worker that died.

A worker holds, for its whole life, a session-level advisory lock keyed by its id
(`pg_advisory_lock(hashtextextended(worker_id, 0))`) on a connection of its own, taken BEFORE it
registers in `processes` with `info.liveness = 1`. When the process dies (kill -9, crash, machine
gone), its TCP connection closes and PostgreSQL drops the lock at once; the orchestrator's recovery
pass (`recovery.expire_leases_of_dead_workers`) then ends the leases of every step that worker held,
and the reaper makes them ready again within RECOVERY_INTERVAL, instead of after LEASE_SECONDS.
A live worker keeps its lock, however slow it is (a paused or busy worker is never taken over early:
its lease and the fencing token work as before). If the worker's own lock connection breaks while
the process lives, `check()` reports it: the worker abandons every in-flight step (they may be taken
over) before it takes the lock again. Behind a transaction-mode pooler (PgBouncer) session locks do
not hold: set FAST_TAKEOVER=0 there.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg

from flowstudio.settings import Settings
from flowstudio.store import locks, processes
from flowstudio.store.db import connect

log = logging.getLogger(__name__)


class LivenessLock:
    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def acquire(self) -> None:
        conn = await connect(self.settings, name="flowstudio-liveness")
        await processes.take_liveness_lock(conn, self.worker_id)
        self._conn = conn

    async def check(self) -> bool:
        """True while the lock's connection answers; False once it broke (then re-acquired)."""
        if self._conn is not None and not self._conn.closed:
            try:
                await locks.ping(self._conn)
                return True
            except psycopg.Error as exc:
                log.warning("liveness connection lost (%s): abandoning in-flight steps", exc)
        await self.close()
        try:
            await self.acquire()
        except psycopg.Error as exc:
            log.warning("cannot take the liveness lock again yet: %s", exc)
        return False

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None
