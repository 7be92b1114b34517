"""Schedule routes: cron schedules per flow (the orchestrator fires them, `engine/schedules.py`).

`create_schedule` validates the cron expression and time zone (422 with the field path), computes
the first tick from the database clock and stores the row; `update_schedule` recomputes the next
tick when the cron, zone or enabled flag changes. Only the schedule's owner (or an admin) sees it;
others 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Response, delete, get, post, put
from litestar.params import FromPath, RequestBody

from flowstudio.api.deps import CurrentUser, RequestConn, User, authenticated, requires, seen_or_404
from flowstudio.api.errors import found, invalid
from flowstudio.api.flows import owned_flow
from flowstudio.engine.schedules import ScheduleError, first_fire, zone
from flowstudio.store import locks
from flowstudio.store import schedules as store
from flowstudio.store.db import Conn

Catchup = Literal["skip", "latest", "all"]


class ScheduleIn(msgspec.Struct, kw_only=True):
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    catchup: Catchup = "latest"
    max_catchup: int = 100
    enabled: bool = True


class SchedulePatch(msgspec.Struct, kw_only=True):
    cron: str | None = None
    timezone: str | None = None
    inputs: dict[str, Any] | None = None
    catchup: Catchup | None = None
    max_catchup: int | None = None
    enabled: bool | None = None


class ScheduleOut(msgspec.Struct, kw_only=True):
    """A schedule row (`store.schedules.COLS`); `inputs` are the runs' free-form inputs."""

    id: UUID
    flow_id: UUID
    owner_id: UUID
    cron: str
    timezone: str
    inputs: dict[str, Any]
    catchup: Catchup
    max_catchup: int
    enabled: bool
    next_fire_at: datetime
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleFire(msgspec.Struct, kw_only=True):
    fire_time: datetime
    run_id: UUID | None  # None: skipped (see skipped_reason) or the run was deleted
    fired_at: datetime
    skipped_reason: str | None


class ScheduleDetail(ScheduleOut, kw_only=True):
    fires: list[ScheduleFire]  # the latest first


def _out(row: dict[str, Any]) -> ScheduleOut:
    return msgspec.convert(row, ScheduleOut)


async def _next_fire(conn: Conn, cron: str, tz: str) -> Any:
    try:
        zone(tz)
    except ScheduleError as exc:
        raise invalid("body.timezone", str(exc)) from exc
    try:
        return first_fire(cron, tz, await locks.db_now(conn))
    except ScheduleError as exc:
        raise invalid("body.cron", str(exc)) from exc


def _check_max(value: int | None) -> None:
    if value is not None and not 1 <= value <= 10_000:
        raise invalid("body.max_catchup", "must be 1-10000", "max_catchup must be 1-10000")


async def owned_schedule(conn: Conn, user: User, schedule_id: UUID) -> dict[str, Any]:
    return seen_or_404(await store.get(conn, schedule_id), user, "schedule")


@post("/api/v1/flows/{flow_id:uuid}/schedules", status_code=201, guards=[requires("flows:write")])
async def create_schedule(
    flow_id: FromPath[UUID], data: RequestBody[ScheduleIn], user: CurrentUser, conn: RequestConn
) -> ScheduleOut:
    await owned_flow(conn, user, flow_id)
    _check_max(data.max_catchup)
    nxt = await _next_fire(conn, data.cron, data.timezone)
    fields = msgspec.structs.asdict(data)  # cron, timezone, inputs, catchup, max_catchup, enabled
    row = await store.create(conn, flow_id=flow_id, owner_id=user.id, next_fire_at=nxt, **fields)
    return _out(row)


@get("/api/v1/flows/{flow_id:uuid}/schedules", guards=[requires("flows:read")])
async def list_schedules(
    flow_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> list[ScheduleOut]:
    await owned_flow(conn, user, flow_id)
    return [_out(r) for r in await store.list_for_flow(conn, flow_id)]


@get("/api/v1/schedules/{schedule_id:uuid}", guards=[authenticated])
async def get_schedule(
    schedule_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> ScheduleDetail:
    row = await owned_schedule(conn, user, schedule_id)
    fires = await store.fires(conn, schedule_id)
    return msgspec.convert({**row, "fires": fires}, ScheduleDetail)


@put("/api/v1/schedules/{schedule_id:uuid}", guards=[requires("flows:write")])
async def update_schedule(
    schedule_id: FromPath[UUID],
    data: RequestBody[SchedulePatch],
    user: CurrentUser,
    conn: RequestConn,
) -> ScheduleOut:
    row = await owned_schedule(conn, user, schedule_id)
    _check_max(data.max_catchup)
    fields = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
    if {"cron", "timezone"} & fields.keys() or (data.enabled and not row["enabled"]):
        fields["next_fire_at"] = await _next_fire(
            conn, data.cron or row["cron"], data.timezone or row["timezone"]
        )
    if not fields:
        return _out(row)
    updated = found(await store.update(conn, schedule_id, fields), "schedule")
    return _out(updated)


@delete("/api/v1/schedules/{schedule_id:uuid}", status_code=204, guards=[requires("flows:write")])
async def delete_schedule(
    schedule_id: FromPath[UUID], user: CurrentUser, conn: RequestConn
) -> Response[None]:
    await owned_schedule(conn, user, schedule_id)
    await store.delete(conn, schedule_id)
    return Response(None, status_code=204)


ROUTES = [create_schedule, list_schedules, get_schedule, update_schedule, delete_schedule]
