"""A frozen worker in a cluster does not swallow new work (RabbitMQ): the attacker freezes one of
two workers (SIGSTOP: a paused VM, a GC pause, a blocked event loop) while runs are being started.

RabbitMQ hands step pointers round-robin to every consumer with free prefetch, and a worker acks
each pointer at claim, so a frozen worker's prefetch stays free and it would be handed about half of
the new pointers, holding them until recovery re-dispatched them (`REDISPATCH_AFTER`, 600 s here,
so it cannot help). Its AMQP heartbeat (AMQP_HEARTBEAT_SECONDS, 1 s here) makes RabbitMQ drop its
connection and requeue them to the live worker. With a 60 s heartbeat this test times out (6 of
the 12 runs were not terminal after 30 s). RabbitMQ only (conftest's `queue_backend`): consumers of
the PostgreSQL queue take messages themselves, and a frozen one takes none.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg

from tests.support.client import Api, linear_flow
from tests.support.durability import (
    assert_runs_durable,
    registered,
    wait_for,
    wait_runs_terminal,
)
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack

Conn = psycopg.Connection[Any]
RUNS = 12


def test_runs_started_while_a_worker_is_frozen_all_finish_on_the_live_one(
    stack: Stack, credentials: tuple[str, str], db: Conn
) -> None:
    stack.start_api()
    # every step travels as a message (no eager chain), and recovery does not re-dispatch
    stack.start_orchestrator(extra_env={"REDISPATCH_AFTER": "600", "EAGER_STEPS": "0"})
    frozen = stack.start_worker(concurrency=8, extra_env={"AMQP_HEARTBEAT_SECONDS": "1"})
    live = stack.start_worker(concurrency=8)
    wait_for(lambda: registered(db, frozen) and registered(db, live), 30, "both workers")
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(
        ("a", "template", {"template": "{{ inputs.n }}"}),
        ("b", "template", {"template": "{{ a }}!"}),
    )
    flow_id = api.create_flow(flow)["id"]
    assert frozen.popen is not None
    os.kill(frozen.popen.pid, signal.SIGSTOP)
    try:
        rids = [api.start_run(flow_id, {"n": i}) for i in range(RUNS)]
        statuses = wait_runs_terminal(db, rids, timeout=30)
    finally:
        os.kill(frozen.popen.pid, signal.SIGCONT)
    assert set(statuses.values()) == {"succeeded"}, statuses
    assert_runs_durable(db, dict.fromkeys(rids, "succeeded"))
    assert frozen.alive, "the frozen worker reconnects when it wakes up"
