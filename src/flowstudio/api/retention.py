"""Pinning runs against retention: `POST /api/v1/runs/{id}/pin` and `/unpin` (owner or admin).

A pinned run is never deleted by `flowstudio prune` or the orchestrator's daily prune
(store/retention.py); runs of others are 404 as everywhere.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import post
from litestar.params import FromPath

from flowstudio.api.deps import CurrentUser, RequestConn, User, authenticated, can_see
from flowstudio.api.errors import not_found
from flowstudio.store import retention
from flowstudio.store.db import Conn


class PinOut(msgspec.Struct):
    id: str
    pinned: bool


async def _set_pinned(conn: Conn, user: User, run_id: UUID, pinned: bool) -> PinOut:
    owner_id = await retention.run_owner(conn, run_id)
    if owner_id is None or not can_see(user, owner_id):
        raise not_found("run")
    await retention.set_pinned(conn, run_id, pinned)
    return PinOut(id=str(run_id), pinned=pinned)


@post("/api/v1/runs/{run_id:uuid}/pin", status_code=200, tags=["runs"], guards=[authenticated])
async def pin_run(run_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> PinOut:
    return await _set_pinned(conn, user, run_id, True)


@post("/api/v1/runs/{run_id:uuid}/unpin", status_code=200, tags=["runs"], guards=[authenticated])
async def unpin_run(run_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> PinOut:
    return await _set_pinned(conn, user, run_id, False)


ROUTES = [pin_run, unpin_run]
