"""Schema migrations: apply `migrations/NNNN_name.sql` in order, once each, under an advisory lock.

`apply_migrations(settings)` takes a session-level advisory lock (so several processes starting at once
serialize), creates `schema_migrations` if needed, and runs each file not yet recorded inside its own
transaction together with its bookkeeping row. Re-running is a no-op. A missing database is
created first (`ensure_database`). `find_migrations_dir()` finds them in the
package (a wheel) or the source checkout (`resources.py`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from flowstudio.resources import migrations_dir
from flowstudio.settings import Settings
from flowstudio.store.db import connect

log = logging.getLogger(__name__)
LOCK_KEY = 0x466C6F77  # "Flow"
NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")


def find_migrations_dir() -> Path:
    return migrations_dir()


def list_migrations(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if NAME.match(p.name))
    versions = [NAME.match(p.name).group(1) for p in files]  # type: ignore[union-attr]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return files


async def ensure_database(settings: Settings) -> None:
    """Create the configured database if it does not exist (a fresh machine needs no manual step)."""
    dbname = str(conninfo_to_dict(settings.database_url).get("dbname") or "")
    if not dbname:
        return
    maint = make_conninfo(settings.database_url, dbname="postgres")
    conn = await psycopg.AsyncConnection.connect(maint, autocommit=True)
    try:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if await cur.fetchone() is None:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            log.info("created database %s", dbname)
    except psycopg.errors.DuplicateDatabase:
        pass  # created concurrently by another process
    finally:
        await conn.close()


async def apply_migrations(settings: Settings, directory: Path | None = None) -> list[str]:
    directory = directory or find_migrations_dir()
    applied: list[str] = []
    try:
        conn = await connect(settings, name="flowstudio-migrate")
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
        await ensure_database(settings)
        conn = await connect(settings, name="flowstudio-migrate")
    try:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT name FROM schema_migrations")
        done = {row["name"] for row in await cur.fetchall()}
        for path in list_migrations(directory):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))  # type: ignore[arg-type]
                await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
            log.info("applied migration %s", path.name)
            applied.append(path.name)
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    finally:
        await conn.close()
    return applied
