"""Slow start clocked by admitted calls (migration 0035, PROVIDER_ACCEPT_AFTER_SECONDS), on the real
stack (API, orchestrator, a worker) against a local provider that allows 16 calls in flight, takes
4 s per call and refuses a call over its cap at once (429, as a real gateway does).

A new provider starts at 2 calls (PROVIDER_INITIAL_CONCURRENCY). With admitted calls reported
(0.1 s here), slow start doubles every report and the provider holds its 16 calls long before the
first one ends; with them off (0), slow start grows only as calls end, so exactly 2 calls go out
during the first call (the behaviour before 0035: a call length per doubling). Either way every item
finishes right, and the overshoot stays small (no storm of 429s: at most a cap's worth).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests.support.client import Api, linear_flow
from tests.support.durability import wait_runs_terminal
from tests.support.fake_openai import FakeOpenAI
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack

Conn = psycopg.Connection[Any]
CAP, CALL_S, ITEMS = 16, 4.0, 40


def start_stack(stack: Stack, credentials: tuple[str, str], accept_after: str) -> tuple[Api, str]:
    """API, orchestrator and one worker (start window 2, admitted calls reported after
    `accept_after` s); a fresh API key stored as a secret: the client and the key's reference."""
    stack.start_api()
    stack.start_orchestrator()
    stack.start_worker(
        concurrency=64,
        extra_env={
            "PROVIDER_INITIAL_CONCURRENCY": "2",
            "PROVIDER_ACCEPT_AFTER_SECONDS": accept_after,
        },
    )
    api = Api(stack.base_url, *credentials)
    secret = "K_" + uuid.uuid4().hex[:8]
    r = api.http.post("/api/v1/secrets", json={"name": secret, "value": "sk-" + uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return api, "{{ secrets." + secret + " }}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("accept_after", ["0.1", "0"])
def test_slow_start_reaches_the_cap_long_before_the_first_call_ends(
    stack: Stack, credentials: tuple[str, str], db: Conn, server: FakeOpenAI, accept_after: str
) -> None:
    api, key_ref = start_stack(stack, credentials, accept_after)
    params = {
        "model": "m",
        "base_url": server.base_url(cap=CAP, first_delay=CALL_S, refuse_at_once=1, retry_after=0.5),
        "api_key": key_ref,
        "prompt": "{{ inputs.name }}",
        "max_tokens": 20,
    }
    flow_id = api.create_flow(linear_flow(("llm", "llm_chat", params)))["id"]
    runs = [api.start_run(flow_id, {"name": f"n{i:02d}"}) for i in range(ITEMS)]
    wait_runs_terminal(db, runs, timeout=180)

    (cur := db.execute("SELECT status, outputs FROM runs WHERE id = ANY(%s::uuid[])", (runs,)))
    rows = cur.fetchall()
    assert sorted(out["text"] for _, out in rows) == [f"echo: n{i:02d}" for i in range(ITEMS)]
    assert {status for status, _ in rows} == {"succeeded"}
    first = min(server.starts)
    # calls that went out before the first answer (those past the cap were refused at once)
    early = sum(1 for t in server.starts if t < first + CALL_S * 0.9)
    refused = len(server.starts) - ITEMS
    (learned,) = db.execute("SELECT floor(known_cap)::int FROM providers").fetchone()
    print(f"\naccept after {accept_after}: {early} calls out during the first call, {refused} 429s")
    if accept_after == "0":
        assert early == 2, early  # the start window, until the first call ends
    else:
        assert early >= CAP and learned == CAP, (early, learned)
    assert refused <= CAP, refused  # one overshoot at most, no storm


@pytest.mark.timeout(180)
def test_a_provider_that_admits_calls_then_fails_them_gains_no_concurrency(
    stack: Stack, credentials: tuple[str, str], db: Conn, server: FakeOpenAI
) -> None:
    """The attack on the admitted-call clock, end to end: a provider that holds every call (1 s)
    and then answers 500. Each call is reported admitted 0.1 s after it went out (+1 in slow
    start), so the window grows while the calls are out; each one then fails, and its release
    takes its +1 back ('failed', migration 0035): the provider ends where it started, with no
    429 ever seen and no permit left."""
    api, key_ref = start_stack(stack, credentials, "0.1")
    params = {
        "model": "m",
        "base_url": server.base_url(first_delay=1, fail=100),
        "api_key": key_ref,
        "prompt": "{{ inputs.name }}",
        "retries": 0,  # one call per step: the 500 fails the step (max_attempts 1)
    }
    flow_id = api.create_flow(linear_flow(("llm", "llm_chat", params)))["id"]
    runs = [api.start_run(flow_id, {"name": f"f{i:02d}"}) for i in range(24)]
    wait_runs_terminal(db, runs, timeout=150)

    statuses = db.execute("SELECT status FROM runs WHERE id = ANY(%s::uuid[])", (runs,)).fetchall()
    assert {s for (s,) in statuses} == {"failed"}
    assert len(server.starts) == 24  # one call each: nothing retried, nothing refused
    assert server.peak > 2, server.peak  # the reports did open the window while calls were out
    (row,) = db.execute(  # this module's tests share a database: this test's provider
        """SELECT p.effective_concurrency, p.known_cap, p.throttled_total,
                  (SELECT count(*) FROM provider_permits pp WHERE pp.provider_id = p.id)
             FROM providers p WHERE p.base_url LIKE %s""",
        ("%/first_delay=1,fail=100/%",),
    ).fetchall()
    effective, known_cap, throttled, permits = row
    print(f"\nslow 500s: peak {server.peak} in flight, effective concurrency now {effective}")
    assert abs(effective - 2) < 1e-6 and known_cap is None and throttled == 0, row
    assert permits == 0, row
