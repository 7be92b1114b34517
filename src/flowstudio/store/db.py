"""Connections to PostgreSQL: the pool every component uses, and one-off connections.

`open_pool(settings)` builds an `AsyncConnectionPool` (TCP keepalives, connections checked on checkout so
a PostgreSQL restart costs a retry, not a crash; only connections idle > 2 s are pinged; the engine's
pools ask for generic plans; DB_PIPELINE is recorded for `pipeline_enabled()`); `connect(settings)`
opens one autocommit connection
(LISTEN, migrations). `retry_db(fn)` re-runs a whole transaction function on connection loss with
backoff, so a dropped connection mid-run delays work instead of killing the process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from flowstudio.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
DictConnection = psycopg.AsyncConnection[dict[str, Any]]
Pool = AsyncConnectionPool[DictConnection]  # every pool hands out dict-row connections
Conn = psycopg.AsyncConnection[Any]  # the connection type handlers and store functions take

KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


IDLE_CHECK_AFTER = 2.0  # seconds: a connection returned more recently than this is not pinged
_RETURNED_AT: dict[int, float] = {}


async def mark_returned(conn: psycopg.AsyncConnection[Any]) -> None:
    _RETURNED_AT[id(conn)] = time.monotonic()


async def check_if_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Ping only connections that sat idle: a busy worker's hot connections skip the round trip;
    a connection idle across a PostgreSQL restart is still caught on checkout."""
    if time.monotonic() - _RETURNED_AT.get(id(conn), 0.0) > IDLE_CHECK_AFTER:
        await AsyncConnectionPool.check_connection(conn)


def _with_generic_plans(database_url: str) -> dict[str, Any]:
    """Connection kwargs that make prepared statements use their generic plan at once. The
    engine's hot statements (guarded moves by id, the flush) gain nothing from re-planning per
    parameter set, and custom planning was ~8% of PostgreSQL's CPU per step in `flowstudio bench`.
    """
    options = conninfo_to_dict(database_url).get("options") or ""
    return {"options": f"{options} -c plan_cache_mode=force_generic_plan".strip()}


_PIPELINE = {"enabled": True}


def pipeline_enabled() -> bool:
    """Whether run transactions may pipeline statements (DB_PIPELINE; set by `open_pool`)."""
    return _PIPELINE["enabled"]


async def open_pool(
    settings: Settings,
    *,
    min_size: int = 1,
    max_size: int | None = None,
    name: str = "flowstudio",
    generic_plans: bool = False,
) -> Pool:
    """`generic_plans`: for the engine's pools (workers, orchestrator); see `_with_generic_plans`."""
    _PIPELINE["enabled"] = settings.db_pipeline
    extra = _with_generic_plans(settings.database_url) if generic_plans else {}
    pool: Pool = AsyncConnectionPool(
        settings.database_url,
        connection_class=DictConnection,
        min_size=min_size,
        max_size=max_size or settings.db_pool_size,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "application_name": name,
            **KEEPALIVE,
            **extra,
        },
        check=check_if_idle,
        reset=mark_returned,
        open=False,
        name=name,
        reconnect_timeout=3600,
    )
    await pool.open(wait=False)
    return pool


async def connect(
    settings: Settings, *, name: str = "flowstudio"
) -> psycopg.AsyncConnection[dict[str, Any]]:
    conn: psycopg.AsyncConnection[dict[str, Any]] = await psycopg.AsyncConnection.connect(
        settings.database_url,
        autocommit=True,
        row_factory=dict_row,
        application_name=name,
        keepalives=KEEPALIVE["keepalives"],
        keepalives_idle=KEEPALIVE["keepalives_idle"],
        keepalives_interval=KEEPALIVE["keepalives_interval"],
        keepalives_count=KEEPALIVE["keepalives_count"],
    )
    return conn


TRANSIENT = (
    psycopg.OperationalError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


async def retry_db(fn: Callable[[], Awaitable[T]], *, what: str, give_up_after: float = 600.0) -> T:
    """Run `fn` (one whole transaction) again after transient connection failures."""
    delay = 0.05
    waited = 0.0
    while True:
        try:
            return await fn()
        except TRANSIENT as exc:
            if waited >= give_up_after:
                raise
            log.warning("database unavailable during %s (%s); retrying in %.2fs", what, exc, delay)
            await anyio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)
