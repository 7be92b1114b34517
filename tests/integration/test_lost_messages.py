"""Losing RabbitMQ's messages loses no run, and a step whose worker keeps dying ends failed.

Each test runs its own processes on a database and queue of its own (`support/private_stack.py`):
- the queue is purged (`rabbitmqctl purge_queue`; messages already delivered to a worker and not yet
  acked survive, as they would a broker that lost its disk) while runs are in flight, again and again, with
  eager dispatch off so every step travels as a message: the orchestrator's re-dispatch of ready
  steps with no recent dispatch (`REDISPATCH_AFTER`) finishes every run, each step committed once;
- the first message of every run is purged while only the API runs: an orchestrator started
  afterwards re-derives the work from PostgreSQL and every run ends;
- the worker holding a step is SIGKILLed each time the step reaches the sink: after
  max_attempts + `LEASE_RECOVERIES` lost leases the reaper fails the step and the run.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tests.support.client import Api, linear_flow
from tests.support.durability import (
    assert_runs_durable,
    step_row,
    wait_for,
    wait_runs_terminal,
)
from tests.support.infra import rabbitmqctl
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.sink import Sink
from tests.support.stack import Proc, Stack

Conn = psycopg.Connection[Any]
FAST_REDISPATCH = {"REDISPATCH_AFTER": "2", "EAGER_STEPS": "0"}


def purge(stack: Stack) -> int:
    """Drop every ready message of this test's queue; returns how many were there just before."""
    seen = queued_messages(stack)
    rabbitmqctl("purge_queue", f"{stack.env['QUEUE_PREFIX']}.steps")
    return seen


def queued_messages(stack: Stack) -> int:
    name = f"{stack.env['QUEUE_PREFIX']}.steps"
    for line in rabbitmqctl("list_queues", "-s", "name", "messages").splitlines():
        parts = line.split("\t")
        if parts[0] == name:
            return int(parts[1])
    return 0


def test_messages_purged_mid_run_are_redispatched_and_every_run_finishes(
    stack: Stack, credentials: tuple[str, str], db: Conn, sink: Sink
) -> None:
    stack.env.update(FAST_REDISPATCH)
    stack.start_api()
    orchestrator = stack.start_orchestrator()
    stack.start_worker(concurrency=4)
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(
        ("call", "http_request", {"url": sink.url("/p", sleep=0.5)}),
        *[(f"t{i}", "template", {"template": f"{i} {{{{ inputs.i }}}}"}) for i in range(4)],
    )
    flow_id = api.create_flow(flow)["id"]
    runs = [api.start_run(flow_id, {"i": i}) for i in range(20)]
    purged = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:  # every message, again and again, while the runs move
        purged += purge(stack)
        time.sleep(0.2)
    assert purged > 0, "nothing was in the queue to lose"
    wait_runs_terminal(db, runs, timeout=90)
    assert_runs_durable(db, {r: "succeeded" for r in runs}, sink)
    # the lost work came back through the orchestrator's re-dispatch (its heartbeat's counters)
    wait_for(
        lambda: redispatched(db, orchestrator) > 0, 10, "the orchestrator to report re-dispatches"
    )


def redispatched(conn: Conn, proc: Proc) -> int:
    assert proc.popen is not None
    row = conn.execute("SELECT info FROM processes WHERE pid = %s", (proc.popen.pid,)).fetchone()
    return int((row[0] if row else {}).get("redispatched", 0))


def test_messages_published_with_no_worker_all_purged_every_run_still_finishes(
    stack: Stack, credentials: tuple[str, str], db: Conn
) -> None:
    stack.env.update(FAST_REDISPATCH)
    stack.start_api()  # alone: nothing consumes or re-publishes until the purge is done
    api = Api(stack.base_url, *credentials)
    flow_id = api.create_flow(linear_flow(("t", "template", {"template": "{{ inputs.i }}"})))["id"]
    runs = [api.start_run(flow_id, {"i": i}) for i in range(10)]
    assert queued_messages(stack) == 10
    purge(stack)
    assert queued_messages(stack) == 0  # the broker holds nothing of these runs any more
    stack.start_orchestrator()
    stack.start_worker(concurrency=4)
    wait_runs_terminal(db, runs, timeout=60)
    assert_runs_durable(db, {r: "succeeded" for r in runs})
    for rid in runs:
        assert step_row(db, rid, "t")["attempt"] == 1


def test_a_step_whose_worker_keeps_dying_fails_after_lease_recoveries(
    stack: Stack, credentials: tuple[str, str], db: Conn, sink: Sink
) -> None:
    stack.env.update({"LEASE_RECOVERIES": "2"})
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=2)
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(("doom", "http_request", {"url": sink.url("/doom", sleep=30)}))
    rid = api.start_run(api.create_flow(flow)["id"])
    key = f"{rid}:doom:0"
    # max_attempts 1 + LEASE_RECOVERIES 2: three attempts, each of which loses its worker
    for attempt in (1, 2, 3):
        wait_for(lambda a=attempt: sink.calls[key] == a, 30, f"attempt {attempt} at the sink")
        assert step_row(db, rid, "doom")["attempt"] == attempt
        worker.kill()
        worker = stack.start_worker(concurrency=2)
    run = api.wait_run(rid, timeout=30)
    doom = api.steps(run)["doom"]
    assert run["status"] == "failed" and doom["status"] == "failed"
    assert doom["attempt"] == 3 and "worker lost 3 times" in doom["error"]["message"]
    assert sink.calls[key] == 3
    assert_runs_durable(db, {rid: "failed"}, sink)
