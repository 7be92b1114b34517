"""I/O-bound steps are cheap to hold: one worker process holds a thousand HTTP calls at once.

A private stack runs ONE worker with `--concurrency 1000`; a run maps 1,000 items through an
`http_request` to a local server that answers no call until all 1,000 are in flight at once
(tests/support/slow_server.py's barrier; HOLD_S at most, so that a worker that cannot hold them
all fails the test instead of hanging it). The server sees all of them at once, held by that
single process, however long a loaded machine takes to claim them (a fixed 12 s hold saw only
835 of 1,000 on a slower machine). The worker's RSS is sampled at the peak and reported next to
its idle RSS (printed, not asserted: a shared machine). A worker started without --concurrency
registers the default WORKER_CONCURRENCY (256).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.client import Api
from tests.support.durability import wait_for
from tests.support.flows import map_flow
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.slow_server import SlowServer
from tests.support.stack import Stack

N = 1000
HOLD_S = 150.0  # the barrier's bound: all 1,000 in flight releases every call at once


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.timeout(600)
def test_one_worker_holds_a_thousand_calls_at_once(
    stack: Stack, credentials: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    server = SlowServer(hold=HOLD_S, release_at=N)
    try:
        # production-like leases (the suite's 3 s ones expire under this load while 1,000 claims
        # queue for the pool, and a re-run is a second call at the server)
        leases = {"LEASE_SECONDS": "30", "HEARTBEAT_SECONDS": "5"}
        stack.start_api(extra_env=leases)
        stack.start_orchestrator(extra_env=leases)
        worker = stack.start_worker(concurrency=N, extra_env=leases)
        assert worker.popen is not None
        api = Api(stack.base_url, *credentials)
        wait_for(
            lambda: db.execute("SELECT 1 FROM processes WHERE kind = 'worker'").fetchone(),
            60,
            "the worker to start",
        )
        time.sleep(1)
        idle = rss_mb(worker.popen.pid)
        body = {"type": "http_request", "params": {"url": server.url(), "timeout_s": 120}}
        flow = api.create_flow(map_flow(body, concurrency=N))
        rid = api.start_run(flow["id"], {"xs": list(range(N))})
        peak_rss = 0.0
        deadline = time.monotonic() + HOLD_S + 90
        while server.served < N and time.monotonic() < deadline:
            if server.in_flight >= server.peak * 0.9:
                peak_rss = max(peak_rss, rss_mb(worker.popen.pid))
            time.sleep(0.2)
        run = api.wait_run(rid, timeout=120)
        assert run["status"] == "succeeded", run.get("error")
        assert len(run["outputs"]) == N and server.served == N
        sys.stdout.write(
            f"\none worker, {N} calls held until all were in: peak {server.peak} in flight at the "
            "server; "
            f"worker RSS idle {idle:.0f} MB, at peak {peak_rss:.0f} MB "
            f"(+{(peak_rss - idle) * 1024 / max(server.peak, 1):.0f} KB per held step)\n"
        )
        assert server.peak == N, f"only {server.peak} of {N} calls were held at once"
        assert worker.alive
    finally:
        server.close()


def test_a_worker_holds_256_steps_by_default(stack: Stack, db: psycopg.Connection[Any]) -> None:
    proc = stack._proc("worker", ["worker"], None)  # no --concurrency: WORKER_CONCURRENCY
    wait_for(
        lambda: db.execute(
            "SELECT info->>'concurrency' FROM processes WHERE pid = %s", (proc.popen.pid,)
        ).fetchone(),
        60,
        "the worker to register",
    )
    (concurrency,) = db.execute(
        "SELECT (info->>'concurrency')::int FROM processes WHERE pid = %s", (proc.popen.pid,)
    ).fetchone()
    assert concurrency == 256
