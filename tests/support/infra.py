"""Infrastructure for durability tests: a private database, and disruption of RabbitMQ and PostgreSQL.

`private_database()` creates a fresh migrated database (dropped afterwards) so that no other process
of the test session recovers, relays or executes the runs of a crash test. The disruptions are what an
operator's bad day looks like, done through the real tools:
- `broker_outage(seconds)`: `rabbitmqctl stop_app`, wait, `start_app` + `await_startup` (restored in a
  `finally`: the broker is shared with other test sessions, so the outage stays short).
- `close_broker_connections(prefix)`: cut only this test's AMQP connections (named
  `flowstudio:{prefix}.steps` by the broker client), not other sessions'; a close that fails while
  the connection is still open raises. `broker_connections(prefix)` counts them.
- `terminate_db_backends(conn)`: `pg_terminate_backend` on every other backend of this database.
- `delete_queue(name)`: drop a test's durable queue when the test is done.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from tests.support.dbrows import one_row

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def private_database(prefix: str = "fs_crash") -> Iterator[str]:
    """A new database with every migration applied; yields its URL and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        subprocess.run(
            [sys.executable, "-m", "flowstudio", "migrate"],
            check=True,
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "FLOWSTUDIO_ENV_FILE": ""},
            capture_output=True,
        )
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def restore_broker() -> None:
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup", "--timeout", "60", timeout=90)


@contextmanager
def broker_outage() -> Iterator[None]:
    """RabbitMQ is stopped inside the block and always started again when it ends."""
    log.warning("stopping RabbitMQ (stop_app)")
    try:
        rabbitmqctl("stop_app")
        yield
    finally:
        restore_broker()
        log.warning("RabbitMQ started again")


def _connection_pids(marker: str) -> list[str]:
    out = rabbitmqctl("list_connections", "-s", "pid", "client_properties")
    return [line.split("\t", 1)[0] for line in out.splitlines() if marker in line]


def broker_connections(queue_prefix: str) -> int:
    """How many AMQP connections the processes using `queue_prefix` have open now."""
    return len(_connection_pids(f'"flowstudio:{queue_prefix}.steps"'))


def close_broker_connections(queue_prefix: str) -> int:
    """Close the AMQP connections of the processes using `queue_prefix`; returns how many were cut.

    A close that fails is an error unless the connection is verifiably gone already (it may have
    closed on its own meanwhile): a "connection cut" with nothing cut must not pass.
    """
    marker = f'"flowstudio:{queue_prefix}.steps"'
    pids = _connection_pids(marker)
    failed: list[tuple[str, str]] = []
    for pid in pids:
        try:
            rabbitmqctl("close_connection", pid, "durability test: connection cut")
        except RuntimeError as exc:
            failed.append((pid, str(exc)))
    if failed:
        still_open = set(_connection_pids(marker))
        stuck = [(pid, err) for pid, err in failed if pid in still_open]
        if stuck:
            raise RuntimeError(f"could not cut AMQP connections: {stuck}")
    return len(pids)


def delete_queue(name: str) -> None:
    try:
        rabbitmqctl("delete_queue", name)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        log.warning("could not delete queue %s: %s", name, exc)


def terminate_db_backends(conn: psycopg.Connection[Any]) -> int:
    """Kill every other connection to this database (the server keeps running); returns how many
    backends were actually terminated (pg_terminate_backend returned true)."""
    (n,) = one_row(conn.execute("""SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
           FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()"""))
    return int(n)
