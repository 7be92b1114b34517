"""Process-level behaviour: several orchestrators share the work without doubling it, a worker
stopped with SIGTERM hands its in-flight step back at once, and the CLI refuses bad input (exit 2).
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.sink import Sink
from tests.support.stack import Stack


def test_three_orchestrators_fire_each_timer_once(
    stack: Stack, user_credentials: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    stack.start_api()
    for _ in range(3):
        stack.start_orchestrator()
    stack.start_worker(concurrency=8)
    api = Api(stack.base_url, *user_credentials)
    flow = api.create_flow(
        linear_flow(
            ("d", "delay", {"seconds": "{{ inputs.s }}"}),
            ("f", "fail", {"succeed_on_attempt": 2}),
            retry={"f": {"retry": {"max_attempts": 3, "initial_interval": 0.2}}},
        )
    )
    rids = [api.start_run(flow["id"], {"s": 0.2 + (i % 5) * 0.15}) for i in range(15)]
    for rid in rids:
        run = api.wait_run(rid, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        assert_event_log_consistent(db, rid)
        assert_no_double_success(db, rid)
        fired = db.execute(
            """SELECT count(*) FILTER (WHERE from_status = 'waiting'),
                      count(*) FILTER (WHERE from_status = 'retrying')
               FROM run_events WHERE run_id = %s AND kind = 'step'""",
            (rid,),
        ).fetchone()
        assert fired == (1, 1), f"run {rid}: timers fired {fired}"


def test_sigterm_releases_the_in_flight_step_at_once(
    stack: Stack, user_credentials: tuple[str, str], sink: Sink, db: psycopg.Connection[Any]
) -> None:
    env = {
        "LEASE_SECONDS": "120",
        "HEARTBEAT_SECONDS": "1",
    }  # only a release can explain a quick retry
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=2, extra_env={**env, "WORKER_GRACE_SECONDS": "0.5"})
    api = Api(stack.base_url, *user_credentials)
    flow = api.create_flow(
        linear_flow(("call", "http_request", {"url": sink.url("/slow", sleep=3)}))
    )
    rid = api.start_run(flow["id"])
    deadline = time.monotonic() + 20
    while sink.calls[f"{rid}:call:0"] == 0:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert worker.terminate(timeout=20) == 0, "worker did not exit cleanly on SIGTERM"
    released = db.execute(
        "SELECT count(*) FROM run_events WHERE run_id = %s AND from_status = 'running' "
        "AND to_status = 'ready'",
        (rid,),
    ).fetchone()
    assert released == (1,)
    stack.start_worker(concurrency=2, extra_env=env)
    run = api.wait_run(rid, timeout=30)
    assert run["status"] == "succeeded" and api.steps(run)["call"]["attempt"] == 2
    assert sink.calls[f"{rid}:call:0"] == 2
    assert_event_log_consistent(db, rid)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstudio", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_bad_input_exits_2_with_a_message(base_env: dict[str, str]) -> None:
    r = run_cli("worker", "--concurrency", "0", env=base_env)
    assert r.returncode == 2 and "concurrency" in r.stderr
    r = run_cli("user", "create", "--email", "nobody", "--password", "x", env=base_env)
    assert r.returncode == 2 and "email" in r.stderr
    r = run_cli("frobnicate", env=base_env)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_migrate_twice_is_a_no_op(base_env: dict[str, str]) -> None:
    r = run_cli("migrate", env=base_env)
    assert r.returncode == 0 and "none (up to date)" in r.stderr
