"""Fixtures that give a durability test module its own database, queue and user.

A crash test must be the only one touching its runs: the session's shared `running_stack` would
otherwise reap, relay and execute them, and a test that kills "the" orchestrator would prove nothing.
A test module imports these fixture functions (`from tests.support.private_stack import
private_base_env, private_credentials, private_db, private_db_url`); they are registered under the
names below and override conftest's `base_env` and `db` for that module only:
- `private_db_url` (module): a fresh migrated database (`infra.private_database`).
- `base_env` (per test): the session env with that database and a queue prefix of its own (the queue
  is deleted after the test), so conftest's `stack` fixture starts processes on them.
- `queue_backend` (conftest): "rabbitmq"; a module that overrides it with params (the crash matrix) runs
  every test against both queue backends (QUEUE_BACKEND).
- `db`: an autocommit connection to the private database; `credentials`: a new editor user in it
  for each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import make_user
from tests.support.infra import delete_queue, private_database


@pytest.fixture(scope="module")
def private_db_url() -> Iterator[str]:
    with private_database() as url:
        yield url


@pytest.fixture(name="base_env")
def private_base_env(
    base_env: dict[str, str], private_db_url: str, queue_backend: str
) -> Iterator[dict[str, str]]:
    prefix = f"fscrash_{uuid.uuid4().hex[:8]}"
    yield {
        **base_env,
        "DATABASE_URL": private_db_url,
        "QUEUE_PREFIX": prefix,
        "DB_POOL_SIZE": "5",
        "QUEUE_BACKEND": queue_backend,
    }
    if queue_backend == "rabbitmq":
        delete_queue(f"{prefix}.steps")


@pytest.fixture(name="db")
def private_db(private_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(private_db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(name="credentials")
def private_credentials(private_db_url: str) -> tuple[str, str]:
    """A user per test: tests reuse fixed Idempotency-Keys, which are unique per user, and a module
    may run each test twice (once per queue backend) on its one database."""
    return make_user(private_db_url)
