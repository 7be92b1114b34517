"""`LeanConnectionPool`: httpcore's async connection pool with an assignment pass linear in its size.

httpcore (1.0.x) runs `_assign_requests_to_connections` on every request and on every response's
close. That pass asks every connection `has_expired()` (a `poll()` of each idle socket), and for
each idle one counts the whole pool again (`len([c.is_idle() for c in connections])`, quadratic),
then filters the whole pool twice per queued request. A worker holding ~64 calls to one provider
keeps ~64 connections: the pass was ~13% of a worker's CPU on `flowstudio bench --llm` (py-spy).
The known fix is still an open pull request upstream (encode/httpcore#1035).

This pass keeps the stock behaviour and drops the repeated work:
- closed connections leave the pool at every pass, as before;
- idle ones are probed for expiry (keep-alive over, or the server closed its end) in a sweep at
  most every `SWEEP_SECONDS`, and an idle connection is always probed right before it is reused,
  so a request is never sent on a connection the server has closed (the stock guarantee);
- surplus idle connections beyond `max_keepalive_connections` are counted once, oldest evicted
  first (the stock code compared the pool's whole size instead, upstream's "bug 1");
- an HTTP/1.1 connection already handed to a request that has not started on it yet is not
  handed to a second request (the stock pass did, and the loser retried on
  `ConnectionNotAvailable`), nor closed to make room.
Flow: request in -> pass (drop closed, maybe sweep, evict surplus idle) -> each queued request:
first available connection (probed if idle) | a new one under `max_connections` | replace an idle
one at the cap -> the stock pool sends it.
"""

from __future__ import annotations

import time

import httpcore
from httpcore import AsyncConnectionInterface

SWEEP_SECONDS = 1.0


class LeanConnectionPool(httpcore.AsyncConnectionPool):
    _next_sweep = 0.0

    def _assign_requests_to_connections(self) -> list[AsyncConnectionInterface]:
        closing: list[AsyncConnectionInterface] = []
        now = time.monotonic()
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + SWEEP_SECONDS
        # idle connections already handed to a request that has not started on them yet
        taken = {
            id(r.connection)
            for r in self._requests
            if r.connection is not None and r.connection.is_idle()
        }
        kept: list[AsyncConnectionInterface] = []
        idle: list[AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.is_idle() and id(connection) not in taken:
                if sweep and connection.has_expired():
                    closing.append(connection)
                    continue
                idle.append(connection)
            kept.append(connection)
        surplus = len(idle) - self._max_keepalive_connections
        if surplus > 0:
            evicted = {id(c) for c in idle[:surplus]}
            closing.extend(idle[:surplus])
            kept = [c for c in kept if id(c) not in evicted]
        self._connections = kept

        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            found = self._available(origin, taken, closing, probe=not sweep)
            if found is not None:
                connection = found
            else:
                if len(self._connections) >= self._max_connections:
                    spare = next(
                        (c for c in self._connections if c.is_idle() and id(c) not in taken),
                        None,
                    )
                    if spare is None:
                        continue  # stays queued until a connection frees up
                    self._connections.remove(spare)
                    closing.append(spare)
                connection = self.create_connection(origin)
                self._connections.append(connection)
            pool_request.assign_to_connection(connection)
            if connection.is_idle():  # HTTP/1.1: one request at a time
                taken.add(id(connection))
        return closing

    def _available(
        self,
        origin: httpcore.Origin,
        taken: set[int],
        closing: list[AsyncConnectionInterface],
        *,
        probe: bool,
    ) -> AsyncConnectionInterface | None:
        """The first connection that can take a request to `origin` now (a multiplexing one, or
        an idle one nobody was handed); an idle one is probed first unless this pass swept."""
        for connection in list(self._connections):
            if id(connection) in taken:
                continue
            if not (connection.can_handle_request(origin) and connection.is_available()):
                continue
            if probe and connection.is_idle() and connection.has_expired():
                self._connections.remove(connection)
                closing.append(connection)
                continue
            return connection
        return None
