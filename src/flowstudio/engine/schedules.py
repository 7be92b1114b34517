"""Cron schedules: which ticks are due, and firing them exactly once even with many orchestrators.

`fire_due_schedules(conn)` (orchestrator, every second) locks each due schedule row with
`FOR UPDATE SKIP LOCKED` (another orchestrator skips it), computes the due ticks with `due_ticks()`
from the schedule's catch-up policy, and for each tick inserts a `schedule_fires` row — its primary key
(schedule, tick) makes a tick fire at most once, even across crashes — and starts the run (the flow's published version, else its latest) in the same
transaction (`checkpoint.start_run`, idempotency key `schedule:{id}:{tick}`). Then `next_fire_at`
moves past now. Times come from the database clock. Catch-up after downtime: `all` fires every missed
tick (at most `max_catchup`), `latest` only the most recent one, `skip` none that is older than
`SKIP_GRACE` seconds.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from cronsim import CronSim, CronSimError

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
            """SELECT s.*, now() AS db_now, f.deleted_at,
                      coalesce(f.published_version, f.version) AS flow_version
               FROM schedules s JOIN flows f ON f.id = s.flow_id
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
        for tick in fire:
            key = f"schedule:{s['id']}:{tick.isoformat()}"
            ins = await conn.execute(
                "INSERT INTO schedule_fires (schedule_id, fire_time) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING RETURNING fire_time",
                (s["id"], tick),
            )
            if await ins.fetchone() is None:
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
            (nxt, bool(fire), s["id"]),
        )
    if fire:
        log.info("schedule %s fired %d tick(s); next at %s", schedule_id, len(fire), nxt)
    return out


def first_fire(cron: str, tz: str, now: datetime | None = None) -> datetime:
    base = now or datetime.now(zone("UTC"))
    return next_tick(cron, tz, base - timedelta(microseconds=1))
