"""A worker SIGKILLed while it holds provider permits: the permits return and the batch finishes.

A private stack (own database and queue) runs an API, an orchestrator and worker A. The provider has
max_concurrency 2 and the server's first two calls hang 60 s (`hang_calls`), so A holds both
permits when it is killed. Worker B then gets the permits — through the fast takeover (30 s
leases: only the dead worker's lost liveness lock can end them in time), or, with FAST_TAKEOVER=0,
through plain lease expiry (3 s leases) — and every item finishes right, long before the hung
calls would have answered. In-flight permits go back to 0 at the end.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import make_user
from tests.integration.test_batches import results, upload, wait_batch
from tests.integration.test_provider_limits import add_secret, llm_flow, provider, register
from tests.support.client import Api
from tests.support.durability import wait_for
from tests.support.fake_openai import FakeOpenAI
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack

HANG = 60.0


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "path",
    [
        {"LEASE_SECONDS": "30", "HEARTBEAT_SECONDS": "1", "FAST_TAKEOVER": "1"},
        {"LEASE_SECONDS": "3", "HEARTBEAT_SECONDS": "0.5", "FAST_TAKEOVER": "0"},
    ],
    ids=["fast_takeover", "lease_expiry"],
)
def test_killed_worker_permits_return_and_the_batch_finishes(
    stack: Stack,
    credentials: tuple[str, str],
    base_env: dict[str, str],
    db: psycopg.Connection[Any],
    server: FakeOpenAI,
    path: dict[str, str],
) -> None:
    stack.start_api(extra_env=path)
    stack.start_orchestrator(extra_env=path)
    worker_a = stack.start_worker(concurrency=8, extra_env=path)
    admin = Api(stack.base_url, *make_user(base_env["DATABASE_URL"], "admin"))
    user = Api(stack.base_url, *credentials)
    key = "sk-crash-" + uuid.uuid4().hex
    base_url = server.base_url(hang_calls=2, hang=HANG)
    prov = register(admin, base_url, key, max_concurrency=2)
    flow = llm_flow(user, base_url, add_secret(user, key))
    names = [f"k{i}" for i in range(6)]
    r = upload(user, flow["id"], json.dumps([{"name": n} for n in names]), "application/json")
    assert r.status_code == 202, r.text
    wait_for(lambda: server.in_flight == 2, 60, "worker A to hold both permits")
    assert provider(admin, prov["id"])["in_flight"] == 2
    worker_a.kill()
    killed_at = time.monotonic()
    stack.start_worker(concurrency=8, extra_env=path)
    done = wait_batch(user, r.json()["id"], timeout=HANG - 10)
    elapsed = time.monotonic() - killed_at
    assert done["status"] == "succeeded", done["counts"]
    rows = results(user, done["id"])
    assert [row["outputs"]["text"] for row in rows] == [f"echo: {n}" for n in names]
    wait_for(lambda: provider(admin, prov["id"])["in_flight"] == 0, 10, "permits to return")
    leftovers = db.execute("SELECT count(*) FROM provider_parked WHERE woken_at IS NULL").fetchone()
    assert leftovers == (0,)
    print(f"\n{path}: batch finished {elapsed:.1f} s after the kill (hung calls: {HANG:.0f} s)")
