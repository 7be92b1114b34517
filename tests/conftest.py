"""Shared fixtures: a fresh PostgreSQL database and RabbitMQ queue per test session, real processes.

- `base_env`: environment for child processes (DATABASE_URL of the session's own database, a unique
  QUEUE_PREFIX, short leases so crash recovery is quick, loopback allowed for HTTP nodes).
- `stack`: per test, a `Stack` that starts real `flowstudio` processes; everything is SIGKILLed after.
- `api`: an `Api` client logged in as a fresh editor, against `running_stack` (API + orchestrator +
  two workers), the default for engine tests that do not kill anything.
- `db`: a psycopg connection to the session database for direct assertions. `sink`: an HTTP sink.
  `fake`: a local OpenAI-compatible server (tests/support/fake_openai.py).
- Every test is marked with its tier, the name of its directory (`unit`, `nodes`, `engine`,
  `integration`, `e2e`, `packaging`): `-m "unit or nodes or engine"` runs the in-process tiers.
- Tests marked `broker_outage` (they stop RabbitMQ itself, which no vhost can isolate) are moved to
  the end of the run, so no other test of the session runs on a broker restarted under it;
  `-m "not broker_outage"` leaves them out (e.g. while others share the machine's broker).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.client import Api
from tests.support.fake_openai import FakeOpenAI
from tests.support.infra import ROOT, private_database
from tests.support.sink import Sink
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with private_database("fs_test") as url:
        yield url


@pytest.fixture(scope="session")
def base_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "FLOWSTUDIO_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "QUEUE_PREFIX": f"fstest_{uuid.uuid4().hex[:8]}",
            # RabbitMQ unless a test asks for the PostgreSQL queue (QUEUE_BACKEND=postgres)
            "AMQP_URL": os.environ.get("AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/",
            "QUEUE_BACKEND": "rabbitmq",
            "FLOWSTUDIO_ENV_FILE": "",
            "LEASE_SECONDS": "3",
            "HEARTBEAT_SECONDS": "0.5",
            "RECOVERY_INTERVAL": "0.5",
            "REDISPATCH_AFTER": "10",
            "HTTP_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECRET_KEY": "test-secret-key-not-for-production",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def queue_backend() -> str:
    """The queue of private stacks (support/private_stack.py); the crash matrix overrides it with
    both backends."""
    return "rabbitmq"


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def make_user(database_url: str, role: str = "editor") -> tuple[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    password = "password-" + uuid.uuid4().hex[:8]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flowstudio",
            "user",
            "create",
            "--email",
            email,
            "--password",
            password,
            "--role",
            role,
        ],
        check=True,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "FLOWSTUDIO_ENV_FILE": ""},
        capture_output=True,
    )
    return email, password


@pytest.fixture(scope="session")
def user_credentials(database_url: str) -> tuple[str, str]:
    return make_user(database_url)


@pytest.fixture
def stack(
    base_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    s = Stack(dict(base_env), tmp_path)
    yield s
    s.stop_all()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        sys.stderr.write(s.logs())


@pytest.fixture(scope="session")
def running_stack(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = Stack(dict(base_env), tmp_path_factory.mktemp("stack"))
    s.start_api()
    s.start_orchestrator()
    s.start_worker(concurrency=8)
    s.start_worker(concurrency=8)
    yield s
    s.stop_all()


@pytest.fixture
def api(running_stack: Stack, user_credentials: tuple[str, str]) -> Api:
    return Api(running_stack.base_url, *user_credentials)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """A local OpenAI-compatible server (per module; its counters are keyed by Idempotency-Key)."""
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A local OpenAI-compatible server of a test's own (a provider test reads its server-wide
    counters: calls in flight, start times)."""
    s = FakeOpenAI()
    yield s
    s.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


TIERS = ("unit", "nodes", "engine", "integration", "e2e", "packaging")  # pyproject.toml markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(ROOT / "tests"):
            parts = item.path.relative_to(ROOT / "tests").parts
            if len(parts) > 1 and parts[0] in TIERS:
                item.add_marker(parts[0])
    items.sort(key=lambda item: item.get_closest_marker("broker_outage") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
