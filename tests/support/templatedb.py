"""Databases for in-process tiers: one migrated template per session, a cheap clone per test.

`migrated_template()` creates `fs_tmpl_<hex>` and applies every migration in-process
(`flowstudio.store.migrate.apply_migrations`, the code `flowstudio migrate` runs), then yields a
`Template`; it is dropped when the session ends. `Template.clone()` creates `fs_eng_<hex>` with
`CREATE DATABASE ... TEMPLATE` (~0.1 s: a copy, no migration per test) and yields its URL; the clone
is dropped after the test on a background thread, and every clone is gone before the template. Nothing else may be connected to the template while it is cloned, so only this module
connects to it, and only while migrating. `settings_for(url)` is a complete `Settings` for code that
takes one (migrations, nodes run by `tests/support/noderun.py`), with the same test values as the
process tiers' `base_env` (tests/conftest.py). Connections wait (`connect_retrying`) while the shared
server has no free connection slot, instead of failing the test.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import msgspec
import psycopg

from flowstudio.settings import Settings
from flowstudio.store.migrate import apply_migrations
from tests.support.infra import ADMIN_URL

log = logging.getLogger(__name__)


def url_of(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def settings_for(database_url: str, **overrides: Any) -> Settings:
    base = Settings(
        database_url=database_url,
        amqp_url="amqp://guest:guest@127.0.0.1:5672/",
        queue_prefix=f"fstest_{uuid.uuid4().hex[:8]}",
        backend_host="127.0.0.1",
        backend_port=0,
        secret_key="test-secret-key-not-for-production",
        maxplatform_url="http://127.0.0.1:9",
        auth_mode="local",
        maxplatform_me_path="/api/auth/me",
        http_allowed_hosts=("127.0.0.1", "localhost"),
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        recovery_interval=0.5,
        redispatch_after=10.0,
        lease_recoveries=5,
        worker_grace_seconds=1.0,
        db_pool_size=2,
        log_level="INFO",
        ui_dist="",
    )
    return msgspec.structs.replace(base, **overrides) if overrides else base


def busy(exc: psycopg.OperationalError) -> bool:
    """The server refused a new connection for now (its connection slots are all taken by the
    other test sessions sharing it): worth waiting for, unlike any other connection error."""
    return "too many clients" in str(exc)


def backoff(attempt: int) -> float:
    return min(0.1 * 2**attempt, 2.0)


TRIES = 30  # ~50 s of waiting for a free connection slot


def connect_retrying(url: str) -> psycopg.Connection[Any]:
    for attempt in range(TRIES):
        try:
            return psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            if not busy(exc) or attempt == TRIES - 1:
                raise
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")


def _admin(sql: str) -> None:
    with connect_retrying(ADMIN_URL) as conn:
        conn.execute(sql)  # type: ignore[arg-type]  # names are generated here, never input


class Template:
    """A migrated template database; `clone()` gives a test its own copy. Clones are dropped on a
    background thread (a DROP waits for a checkpoint now and then), all gone before the template."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._drops: queue.Queue[str | None] = queue.Queue()
        self._dropper = threading.Thread(target=self._drop_loop, name="drop-clones", daemon=True)
        self._dropper.start()

    def _drop_loop(self) -> None:
        while (name := self._drops.get()) is not None:
            _drop(name)

    @contextmanager
    def clone(self, prefix: str = "fs_eng") -> Iterator[str]:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        try:
            yield url_of(name)
        finally:
            self._drops.put(name)

    def close(self) -> None:
        self._drops.put(None)
        self._dropper.join()


def _drop(name: str) -> None:
    """Drop a database; one that cannot be dropped is logged, never raised from the thread."""
    try:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        log.error("test database %s was left behind: %s", name, exc)


@contextmanager
def migrated_template() -> Iterator[Template]:
    name = f"fs_tmpl_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    template = Template(name)
    try:
        anyio.run(apply_migrations, settings_for(url_of(name)))
        yield template
    finally:
        template.close()
        _drop(name)
