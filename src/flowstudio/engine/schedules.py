"""Cron schedules: which ticks are due, and firing them exactly once even with many orchestrators.

`fire_due_schedules(conn)` (orchestrator, every second) locks each due schedule row with
`FOR UPDATE SKIP LOCKED` (another orchestrator skips it), computes the due ticks with `due_ticks()`
from the schedule's catch-up policy, and for each tick inserts a `schedule_fires` row — its primary key
(schedule, tick) makes a tick fire at most once, even across crashes — and starts the run (the flow's published version, else its latest) in the same
transaction (`checkpoint.start_run`, idempotency key `schedule:{id}:{tick}`). Then `next_fire_at`
moves past now. Times come from the database clock. Catch-up after downtime: `all` fires every
missed tick (at most `max_catchup`), `latest` only the most recent one, `skip` none that is older
than `SKIP_GRACE` seconds. Access is checked at fire time, not only when the schedule was made
(`owner_refusal`): an owner who is gone or disabled, whose roles no longer allow running flows, or
who lost access to the flow (not its owner, not an admin, no `run` share) gets no run; the tick is
recorded in `schedule_fires` with `skipped_reason` and a warning is logged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from cronsim import CronSim, CronSimError

from flowstudio.auth.roles import permissions_of
from flowstudio.engine.checkpoint import start_run
from flowstudio.engine.runtxn import OutboxMessage

log = logging.getLogger(__name__)
SKIP_GRACE = 60.0
BATCH = 50


class ScheduleError(ValueError):
    pass


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {tz!r}") from exc


def next_tick(cron: str, tz: str, after: datetime) -> datetime:
    """The first tick strictly after `after`."""
    try:
        return next(iter(CronSim(cron, after.astimezone(zone(tz)))))
    except (CronSimError, StopIteration) as exc:
        raise ScheduleError(f"invalid cron expression {cron!r}: {exc}") from exc


def due_ticks(
    cron: str, tz: str, first_due: datetime, now: datetime, catchup: str, max_catchup: int
) -> tuple[list[datetime], datetime]:
    """(ticks to fire, next_fire_at) for a schedule whose next tick was `first_due`."""
    ticks = [first_due]
    for tick in CronSim(cron, first_due.astimezone(zone(tz))):
        if tick > now:
            break
        ticks.append(tick)
        if len(ticks) > max(max_catchup, 1) * 2 + 10:
            ticks = ticks[-max(max_catchup, 1) :]
    match catchup:
        case "all":
            fire = ticks[-max(max_catchup, 1) :]
        case "latest":
            fire = ticks[-1:]
        case _:
            fire = [t for t in ticks[-1:] if (now - t).total_seconds() <= SKIP_GRACE]
    return fire, next_tick(cron, tz, now)


async def fire_due_schedules(conn: psycopg.AsyncConnection[Any]) -> list[OutboxMessage]:
    cur = await conn.execute(
        "SELECT id FROM schedules WHERE enabled AND next_fire_at <= now() "
        "ORDER BY next_fire_at LIMIT %s",
        (BATCH,),
    )
    out: list[OutboxMessage] = []
    for row in await cur.fetchall():
        out += await _fire_one(conn, row["id"])
    return out


async def _fire_one(conn: psycopg.AsyncConnection[Any], schedule_id: Any) -> list[OutboxMessage]:
    out: list[OutboxMessage] = []
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT s.*, now() AS db_now, f.deleted_at, f.owner_id AS flow_owner_id,
                      coalesce(f.published_version, f.version) AS flow_version,
                      to_jsonb(u) - 'password_hash' AS owner,
                      (SELECT sh.permission FROM flow_shares sh
                       WHERE sh.flow_id = s.flow_id AND sh.user_id = s.owner_id) AS share_permission
               FROM schedules s JOIN flows f ON f.id = s.flow_id
               LEFT JOIN users u ON u.id = s.owner_id
               WHERE s.id = %s AND s.enabled AND s.next_fire_at <= now()
               FOR UPDATE OF s SKIP LOCKED""",
            (schedule_id,),
        )
        s = await cur.fetchone()
        if s is None:
            return out  # another orchestrator holds it, or it is no longer due
        if s["deleted_at"] is not None:
            await conn.execute("UPDATE schedules SET enabled = false WHERE id = %s", (s["id"],))
            return out
        try:
            fire, nxt = due_ticks(
                s["cron"],
                s["timezone"],
                s["next_fire_at"],
                s["db_now"],
                s["catchup"],
                s["max_catchup"],
            )
        except ScheduleError as exc:
            log.error("schedule %s disabled: %s", s["id"], exc)
            await conn.execute("UPDATE schedules SET enabled = false WHERE id = %s", (s["id"],))
            return out
        refusal = owner_refusal(s)
        for tick in fire:
            key = f"schedule:{s['id']}:{tick.isoformat()}"
            ins = await conn.execute(
                "INSERT INTO schedule_fires (schedule_id, fire_time, skipped_reason) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING fire_time",
                (s["id"], tick, refusal),
            )
            if await ins.fetchone() is None:
                continue
            if refusal is not None:
                log.warning("schedule %s tick %s skipped: %s", s["id"], tick.isoformat(), refusal)
                continue
            started = await start_run(
                conn,
                flow_id=s["flow_id"],
                version=s["flow_version"],
                owner_id=s["owner_id"],
                inputs={**s["inputs"], "scheduled_at": tick.isoformat()},
                idempotency_key=key,
            )
            await conn.execute(
                "UPDATE schedule_fires SET run_id = %s WHERE schedule_id = %s AND fire_time = %s",
                (started.id, s["id"], tick),
            )
            out += started.outbox
        await conn.execute(
            """UPDATE schedules SET next_fire_at = %s, updated_at = now(),
                   last_fired_at = CASE WHEN %s THEN now() ELSE last_fired_at END
               WHERE id = %s""",
            (nxt, bool(fire) and refusal is None, s["id"]),
        )
    if fire and refusal is None:
        log.info("schedule %s fired %d tick(s); next at %s", schedule_id, len(fire), nxt)
    return out


def owner_refusal(s: dict[str, Any]) -> str | None:
    """Why the schedule's owner may not start this run now, or None."""
    owner = s["owner"]
    if owner is None:
        return "the schedule's owner no longer exists"
    if any(owner.get(flag) for flag in ("disabled", "disabled_at", "deleted_at")):
        return "the schedule's owner is disabled"
    roles = owner.get("roles") or []
    if "runs:write" not in permissions_of(roles):
        return "the schedule's owner may no longer run flows"
    is_flow_owner = str(s["flow_owner_id"]) == str(s["owner_id"])
    if not (is_flow_owner or "admin" in roles or s["share_permission"] == "run"):
        return "the schedule's owner lost access to the flow"
    return None


def first_fire(cron: str, tz: str, now: datetime | None = None) -> datetime:
    base = now or datetime.now(zone("UTC"))
    return next_tick(cron, tz, base - timedelta(microseconds=1))
