"""Fixtures of the in-process tiers (tests/engine, tests/nodes), imported by their conftest.py files.

- `template_db` (session): one migrated template database (tests/support/templatedb.py).
- `engine_url` (per test): a fresh clone of it, dropped after the test.
- `env` (per test, async): an `EngineEnv` (tests/support/engine_env.py) on that clone.
- `node_registry` (session, autouse where imported): the node families, imported once.
- `anyio_backend`: async tests run on asyncio (`pytest.mark.anyio`, anyio's pytest plugin).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from flowstudio.nodes import registry
from tests.support.engine_env import EngineEnv
from tests.support.templatedb import Template, migrated_template


@pytest.fixture(scope="session", autouse=True)
def node_registry() -> None:
    """Import the node families once per session, not inside the first test's time."""
    registry.load_all()


@pytest.fixture(scope="session")
def template_db() -> Iterator[Template]:
    with migrated_template() as template:
        yield template


@pytest.fixture
def engine_url(template_db: Template) -> Iterator[str]:
    with template_db.clone() as url:
        yield url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(engine_url: str) -> AsyncIterator[EngineEnv]:
    async with EngineEnv.open(engine_url) as e:
        yield e
