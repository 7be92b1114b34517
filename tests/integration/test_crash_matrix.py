"""The durability crash matrix: real processes are SIGKILLed (or crash themselves at named crash points,
FLOWSTUDIO_CRASHPOINTS) and RabbitMQ / PostgreSQL connections are cut while runs are in flight.

Every test runs against both queue backends (`queue_backend`: RabbitMQ, and the PostgreSQL queue
of QUEUE_BACKEND=postgres), except the two that cut RabbitMQ itself. Each test gets its own
database and queue (`support/private_stack.py`), starts API / orchestrator / workers through
conftest's `stack`, starts runs over HTTP, breaks one thing at one moment, restarts what died,
then checks every run in PostgreSQL (`support/durability.py`): terminal in a bounded time, event
log consistent, no step committed twice, sink calls <= attempts per Idempotency-Key.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.client import Api, linear_flow
from tests.support.dbrows import insert_run
from tests.support.durability import (
    assert_runs_durable,
    outbox_rows,
    registered,
    step_row,
    succeeded_events,
    wait_for,
    wait_runs_terminal,
)
from tests.support.infra import (
    broker_connections,
    broker_outage,
    close_broker_connections,
    terminate_db_backends,
)
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.sink import Sink
from tests.support.stack import Proc, Stack

Creds = tuple[str, str]
Conn = psycopg.Connection[Any]
TERMINAL = ["succeeded", "failed", "cancelled"]
NO_CRASH = {"FLOWSTUDIO_CRASHPOINTS": ""}
log = logging.getLogger(__name__)


@pytest.fixture(params=["rabbitmq", "postgres"])
def queue_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def needs_rabbitmq(queue_backend: str) -> None:
    if queue_backend != "rabbitmq":
        pytest.skip("cuts RabbitMQ itself; the PostgreSQL queue's outage is the database's")


def start_all(stack: Stack, creds: Creds, workers: int = 1, concurrency: int = 4) -> Api:
    stack.start_api()
    stack.start_orchestrator()
    for _ in range(workers):
        stack.start_worker(concurrency=concurrency)
    return Api(stack.base_url, *creds)


def assert_crashed(proc: Proc, timeout: float = 20) -> None:
    """The process killed itself at its crash point (SIGKILL), it did not exit cleanly."""
    assert proc.wait_exit(timeout) == -9, f"{proc.name} did not crash:\n{proc.log_tail()}"


def test_killed_worker_step_is_retried_with_same_idempotency_key(
    stack: Stack, credentials: Creds, db: Conn, sink: Sink
) -> None:
    api = start_all(stack, credentials, workers=0)
    worker = stack.start_worker(concurrency=2)
    flow = linear_flow(
        ("first", "http_request", {"url": sink.url("/first")}),
        ("slow", "http_request", {"url": sink.url("/slow", sleep=3)}),
    )
    rid = api.start_run(api.create_flow(flow)["id"])
    slow_key = f"{rid}:slow:0"
    wait_for(lambda: sink.calls[slow_key] >= 1, 20, "the slow call to reach the sink")
    worker.kill()  # mid-request: the call happened, its result was never committed
    killed = step_row(db, rid, "slow")  # ready once the orchestrator saw the worker's lock go
    assert killed["status"] in ("running", "ready") and killed["attempt"] == 1, killed
    stack.start_worker(concurrency=2)

    wait_runs_terminal(db, [rid], timeout=30)
    assert_runs_durable(db, {rid: "succeeded"}, sink)
    slow, first = step_row(db, rid, "slow"), step_row(db, rid, "first")
    # exactly one re-run, with the same key: the killed attempt's call and the new attempt's call
    assert slow["attempt"] == 2 and sink.calls[slow_key] == 2
    assert first["attempt"] == 1 and sink.calls[f"{rid}:first:0"] == 1
    assert succeeded_events(db, rid, "first") == 1


def test_killed_worker_is_taken_over_long_before_its_lease_expires(
    stack: Stack, credentials: Creds, db: Conn, sink: Sink
) -> None:
    # a 30 s lease: without fast takeover the step would wait for it (issue: a chat user waited 33 s)
    slow_lease = {"LEASE_SECONDS": "30", "HEARTBEAT_SECONDS": "1"}
    stack.start_api(extra_env=slow_lease)
    stack.start_orchestrator(extra_env=slow_lease)
    worker = stack.start_worker(concurrency=2, extra_env=slow_lease)
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(("slow", "http_request", {"url": sink.url("/slow", sleep=3)}))
    rid = api.start_run(api.create_flow(flow)["id"])
    key = f"{rid}:slow:0"
    wait_for(lambda: sink.calls[key] >= 1, 20, "the slow call to reach the sink")
    healthy = stack.start_worker(concurrency=2, extra_env=slow_lease)
    wait_for(lambda: registered(db, healthy), 30, "the second worker to start")
    worker.kill()
    killed_at = time.monotonic()
    wait_for(lambda: sink.calls[key] >= 2, 25, "the step to run again on the live worker")
    resumed_s = time.monotonic() - killed_at
    log.info("fast takeover: the step ran again %.2f s after kill -9 of its worker", resumed_s)
    sys.stdout.write(f"fast takeover: step resumed {resumed_s:.2f} s after kill -9 (lease 30 s)\n")
    wait_runs_terminal(db, [rid], timeout=30)
    assert_runs_durable(db, {rid: "succeeded"}, sink)
    assert step_row(db, rid, "slow")["attempt"] == 2 and sink.calls[key] == 2


def test_paused_worker_whose_lease_expired_cannot_commit(
    stack: Stack, credentials: Creds, db: Conn, sink: Sink
) -> None:
    # Recovery's re-dispatch of unclaimed pointers is off (REDISPATCH_AFTER 600 s): what brings the
    # step back is the lease's expiry alone, and with RabbitMQ the frozen consumer's pointers come
    # back through the AMQP heartbeat (1 s here): the broker drops its connection.
    stack.start_api()
    stack.start_orchestrator(extra_env={"REDISPATCH_AFTER": "600"})
    api = Api(stack.base_url, *credentials)
    zombie = stack.start_worker(concurrency=2, extra_env={"AMQP_HEARTBEAT_SECONDS": "1"})
    flow = linear_flow(("slow", "http_request", {"url": sink.url("/slow", sleep=3)}))
    rid = api.start_run(api.create_flow(flow)["id"])
    key = f"{rid}:slow:0"
    wait_for(lambda: sink.calls[key] >= 1, 20, "the first call to reach the sink")
    assert zombie.popen is not None
    os.kill(zombie.popen.pid, signal.SIGSTOP)  # a GC pause / frozen VM: its lease runs out
    try:
        # the lease expires and the re-run's pointer is published while the frozen worker is the
        # only consumer: RabbitMQ would hand it over (the worker has free prefetch) and it would
        # stay there, if the broker did not drop the frozen connection
        wait_for(lambda: step_row(db, rid, "slow")["status"] == "ready", 20, "the lease to expire")
        wait_for(lambda: outbox_rows(db, rid, "slow") == 0, 20, "the re-run's pointer to go out")
        healthy = stack.start_worker(concurrency=2)
        wait_for(lambda: registered(db, healthy), 30, "the second worker to start")
        wait_for(lambda: sink.calls[key] >= 2, 20, "the re-run after the lease expired")
    finally:
        os.kill(zombie.popen.pid, signal.SIGCONT)  # it wakes up holding a stale attempt

    wait_runs_terminal(db, [rid], timeout=30)
    assert_runs_durable(db, {rid: "succeeded"}, sink)
    (output,) = db.execute(
        "SELECT io.output FROM steps s JOIN step_io io ON io.step_id = s.id "
        "WHERE s.run_id = %s AND s.node_id = 'slow'",
        (rid,),
    ).fetchone()
    # the committed answer is the re-run's (the sink's 2nd call), never the zombie's 1st
    assert (
        output["body"]["n"] == 2 and sink.calls[key] == 2
    ), "the zombie's stale result was committed"
    assert step_row(db, rid, "slow")["attempt"] == 2
    assert zombie.alive, "a fenced-off commit must not take the worker down"


def test_api_killed_after_commit_returns_the_same_run_on_retry(
    stack: Stack, credentials: Creds, db: Conn, sink: Sink
) -> None:
    api_proc = stack.start_api(extra_env={"FLOWSTUDIO_CRASHPOINTS": "api.run_committed"})
    stack.start_orchestrator()
    stack.start_worker()
    api = Api(stack.base_url, *credentials)
    flow_id = api.create_flow(linear_flow(("call", "http_request", {"url": sink.url("/c")})))["id"]
    key = f"crash-after-commit-{uuid.uuid4().hex[:8]}"  # both backends share the module's database
    with pytest.raises(httpx.TransportError):
        api.start_run(flow_id, key=key)
    assert_crashed(api_proc)
    rows = db.execute("SELECT id::text FROM runs WHERE idempotency_key = %s", (key,)).fetchall()
    assert len(rows) == 1, "the run must have been committed before the crash"

    api_proc.restart(NO_CRASH)
    stack.wait_api(api_proc)
    rid = api.start_run(flow_id, key=key)
    assert rid == rows[0][0]
    (count,) = db.execute("SELECT count(*) FROM runs WHERE idempotency_key = %s", (key,)).fetchone()
    assert count == 1
    wait_runs_terminal(db, [rid], timeout=30)
    assert_runs_durable(db, {rid: "succeeded"}, sink)
    assert sink.calls[f"{rid}:call:0"] == 1


def test_orchestrator_killed_between_timer_commit_and_publish_loses_nothing(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    stack.start_api()
    orch = stack.start_orchestrator(
        extra_env={"FLOWSTUDIO_CRASHPOINTS": "orchestrator.timers_committed"}
    )
    stack.start_worker()
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(("d", "delay", {"seconds": 1}), ("t", "template", {"template": "after"}))
    rid = api.start_run(api.create_flow(flow)["id"])
    assert_crashed(orch)
    # The timer's checkpoint committed (d done, t ready with an outbox row) but nothing was published.
    assert step_row(db, rid, "d")["status"] == "succeeded"
    assert step_row(db, rid, "t")["status"] == "ready" and outbox_rows(db, rid, "t") == 1

    orch.restart(NO_CRASH)  # the relay publishes the committed row
    wait_runs_terminal(db, [rid], timeout=30)
    assert_runs_durable(db, {rid: "succeeded"})
    assert succeeded_events(db, rid, "d") == 1 and step_row(db, rid, "t")["attempt"] == 1
    wait_for(lambda: outbox_rows(db, rid) == 0, 10, "the outbox to drain")


def test_orchestrator_killed_between_a_folded_batch_start_and_its_publish_loses_nothing(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    """The dispatcher starts batch runs past their pass-through input (FOLD_STEPS, migration
    0033) and dies before publishing: the relay of the next orchestrator publishes the
    committed messages, and every run finishes with each step committed once."""
    stack.start_api()
    orch = stack.start_orchestrator(
        extra_env={"FLOWSTUDIO_CRASHPOINTS": "orchestrator.batch_dispatched"}
    )
    stack.start_worker()
    api = Api(stack.base_url, *credentials)
    flow = api.create_flow(linear_flow(("t", "template", {"template": "hi {{ inputs.n }}"})))
    r = api.http.post(f"/api/v1/flows/{flow['id']}/batches", json=[{"n": i} for i in range(40)])
    assert r.status_code == 202, r.text
    assert_crashed(orch)
    started = db.execute(
        """SELECT r.id FROM runs r JOIN steps s ON s.run_id = r.id AND s.node_id = 'in'
           WHERE r.batch_id = %s AND s.status = 'succeeded'""",
        (r.json()["id"],),
    ).fetchall()
    assert started  # folded: the input step committed with the dispatch, `t` waits in the outbox
    assert all(outbox_rows(db, str(row[0]), "t") == 1 for row in started)
    orch.restart(NO_CRASH)
    runs = [
        str(row[0])
        for row in db.execute("SELECT id FROM runs WHERE batch_id = %s", (r.json()["id"],))
    ]
    wait_runs_terminal(db, runs, timeout=60)
    assert_runs_durable(db, dict.fromkeys(runs, "succeeded"))
    for rid in runs:
        assert succeeded_events(db, rid, "in") == 1 and succeeded_events(db, rid, "t") == 1


def test_relay_killed_between_publish_and_delete_republishes_harmlessly(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    relay_key = f"relay-crash-{uuid.uuid4().hex[:8]}"  # both backends share the database
    # The API dies before publishing, so the run's first message exists only as an outbox row.
    api_proc = stack.start_api(extra_env={"FLOWSTUDIO_CRASHPOINTS": "api.run_committed"})
    stack.start_worker()
    api = Api(stack.base_url, *credentials)
    flow_id = api.create_flow(linear_flow(("t", "template", {"template": "x"})))["id"]
    with pytest.raises(httpx.TransportError):
        api.start_run(flow_id, key=relay_key)
    assert_crashed(api_proc)
    orch = stack.start_orchestrator(extra_env={"FLOWSTUDIO_CRASHPOINTS": "outbox.relay_published"})
    (rid,) = db.execute(
        "SELECT id::text FROM runs WHERE idempotency_key = %s", (relay_key,)
    ).fetchone()

    assert_crashed(orch)  # published, then died before the DELETE: the row is still there
    assert outbox_rows(db, rid, "in") == 1
    orch.restart(NO_CRASH)  # publishes the same pointer again: a duplicate the worker must ignore
    wait_runs_terminal(db, [rid], timeout=30)
    wait_for(lambda: outbox_rows(db, rid) == 0, 15, "the relay to delete the republished row")
    assert_runs_durable(db, {rid: "succeeded"})
    assert step_row(db, rid, "in")["attempt"] == 1


def test_orchestrator_killed_repeatedly_while_timers_fire_fires_each_timer_once(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    # Each orchestrator incarnation SIGKILLs itself right after its first committed timer pass (the
    # crash point, not a race with the clock), so every kill lands mid-firing however slow the
    # machine's restarts are; the timers are spread over ~18 s so that several incarnations fire some.
    crash_at_firing = {"FLOWSTUDIO_CRASHPOINTS": "orchestrator.timers_committed"}
    api = start_all(stack, credentials, workers=0)
    stack.start_worker(concurrency=8)
    orch = next(p for p in stack.procs if p.name.startswith("orchestrator"))
    orch.restart(crash_at_firing)
    flow = linear_flow(
        ("d", "delay", {"seconds": "{{ inputs.s }}"}),
        ("t", "template", {"template": "{{ inputs.s }}"}),
    )
    flow_id = api.create_flow(flow)["id"]
    runs = [api.start_run(flow_id, {"s": round(1.0 + 1.5 * i, 2)}) for i in range(12)]

    def fired() -> int:
        (n,) = db.execute(
            "SELECT count(*) FROM steps WHERE run_id = ANY(%s::uuid[]) AND node_id = 'd' "
            "AND status = 'succeeded'",
            (runs,),
        ).fetchone()
        return int(n)

    fired_at_kill: list[int] = []
    while fired() < len(runs) and len(fired_at_kill) < 8:
        assert_crashed(orch, timeout=60)
        fired_at_kill.append(fired())
        orch.restart(crash_at_firing if fired_at_kill[-1] < len(runs) else NO_CRASH)
    orch.restart(NO_CRASH)  # whatever the last incarnation did, finish with a healthy one

    wait_runs_terminal(db, runs, timeout=60)
    log.info("timers fired when the orchestrator was killed: %s", fired_at_kill)
    mid_firing = [f for f in fired_at_kill if 0 < f < len(runs)]
    assert len(mid_firing) >= 2, f"too few kills while timers fired: {fired_at_kill}"
    assert_runs_durable(db, {r: "succeeded" for r in runs})
    for rid in runs:
        assert succeeded_events(db, rid, "d") == 1 and step_row(db, rid, "d")["attempt"] == 1


def test_worker_killed_after_commit_next_steps_are_still_dispatched(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    stack.start_api()
    stack.start_orchestrator()
    doomed = stack.start_worker(  # every next step goes through the outbox (no eager dispatch)
        concurrency=1,
        extra_env={"FLOWSTUDIO_CRASHPOINTS": "worker.after_commit:4", "EAGER_STEPS": "0"},
    )
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(*[(f"t{i}", "template", {"template": f"t{i}"}) for i in range(4)])
    flow_id = api.create_flow(flow)["id"]
    tag = uuid.uuid4().hex[:8]
    runs = [api.start_run(flow_id, key=f"after-commit-{tag}-{i}") for i in range(3)]
    assert_crashed(doomed)
    (committed,) = db.execute(
        "SELECT count(*) FROM steps WHERE run_id = ANY(%s::uuid[]) AND status = 'succeeded'",
        (runs,),
    ).fetchone()
    assert committed == 4  # the fourth commit made it; its follow-up pointer was never published
    stack.start_worker(concurrency=2)

    wait_runs_terminal(db, runs, timeout=30)
    assert_runs_durable(db, {r: "succeeded" for r in runs})
    (max_attempt,) = db.execute(
        "SELECT max(attempt) FROM steps WHERE run_id = ANY(%s::uuid[])", (runs,)
    ).fetchone()
    assert max_attempt == 1  # nothing was running at the crash: no step ran twice


def test_worker_killed_after_an_eager_claim_the_lease_carries_the_next_step(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    """Eager dispatch: the commit of t0 (the 2nd, after `in`) also claimed t1 for the same worker
    (no outbox row, no message). The worker dies right after that commit; t1's lease ends (at once:
    the dead worker's liveness lock is gone), the reaper makes it ready again and another worker
    runs it (attempt 2). t0 does not run again."""
    stack.start_api()
    stack.start_orchestrator()
    doomed = stack.start_worker(
        concurrency=1, extra_env={"FLOWSTUDIO_CRASHPOINTS": "worker.after_commit:2"}
    )
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(*[(f"t{i}", "template", {"template": f"t{i}"}) for i in range(4)])
    run = api.start_run(api.create_flow(flow)["id"], key=f"eager-crash-{uuid.uuid4().hex[:8]}")
    assert_crashed(doomed)
    # t0's success (seq s) made t1 ready (s + 1) and claimed it (s + 2) in the same statement
    events = db.execute(
        """SELECT seq, node_id, attempt, from_status, to_status FROM run_events
           WHERE run_id = %s AND node_id IN ('t0', 't1') ORDER BY seq""",
        (run,),
    ).fetchall()
    (s,) = [seq for seq, node, _, _, to in events if node == "t0" and to == "succeeded"]
    assert [e for e in events if e[1] == "t1"][:2] == [
        (s + 1, "t1", 0, "pending", "ready"),
        (s + 2, "t1", 1, "ready", "running"),
    ], events
    held = step_row(db, run, "t1")
    if held["status"] == "running":  # not reaped yet (the orchestrator may be that fast)
        assert held["attempt"] == 1 and outbox_rows(db, run, "t1") == 0  # the lease carries it
    stack.start_worker(concurrency=1)

    wait_runs_terminal(db, [run], timeout=30)
    assert_runs_durable(db, {run: "succeeded"})
    attempts = dict(
        db.execute("SELECT node_id, attempt FROM steps WHERE run_id = %s", (run,)).fetchall()
    )
    assert attempts == {"in": 1, "t0": 1, "t1": 2, "t2": 1, "t3": 1, "out": 1}


def in_flight_flow(sink: Sink, delay: float = 1) -> dict[str, Any]:
    """HTTP (slow), durable delay, a flaky retried node: a run touches every engine path."""
    return linear_flow(
        ("call", "http_request", {"url": sink.url("/slow", sleep=1)}),
        ("d", "delay", {"seconds": delay}),
        ("f", "fail", {"succeed_on_attempt": 2}),
        ("t", "template", {"template": "{{ inputs.i }}"}),
        retry={"f": {"retry": {"max_attempts": 3, "initial_interval": 0.3}}},
    )


def start_in_flight_runs(
    stack: Stack, creds: Creds, sink: Sink, n: int, delay: float = 1
) -> list[str]:
    api = start_all(stack, creds, workers=2, concurrency=4)
    flow_id = api.create_flow(in_flight_flow(sink, delay))["id"]
    runs = [api.start_run(flow_id, {"i": i}) for i in range(n)]
    wait_for(lambda: sum(sink.calls.values()) >= 2, 20, "the first HTTP calls")
    return runs


@pytest.mark.broker_outage
def test_runs_finish_after_a_broker_restart(
    stack: Stack, credentials: Creds, db: Conn, sink: Sink, queue_backend: str
) -> None:
    needs_rabbitmq(queue_backend)
    runs = start_in_flight_runs(stack, credentials, sink, 6, delay=5)  # live however slow the stop
    with broker_outage():
        live_at_stop = live_runs(db, runs)
        time.sleep(3)
        live_at_restart = live_runs(db, runs)
        (restarted_at,) = db.execute("SELECT now()").fetchone()
    # Work crossed the outage: runs started before it were still live when the broker came back
    # (a timer-fired step needs a message), and they finished afterwards.
    assert live_at_stop and live_at_restart, (live_at_stop, live_at_restart)
    wait_runs_terminal(db, runs, timeout=40)
    assert_runs_durable(db, {r: "succeeded" for r in runs}, sink)
    (after,) = db.execute(
        "SELECT count(DISTINCT run_id) FROM run_events WHERE run_id = ANY(%s::uuid[]) "
        "AND kind = 'run' AND to_status = 'succeeded' AND at > %s",
        (live_at_restart, restarted_at),
    ).fetchone()
    assert after == len(live_at_restart), "runs live at the restart did not finish after it"
    assert all(p.alive for p in stack.procs), stack.logs()


def live_runs(conn: Conn, runs: list[str]) -> list[str]:
    sql = "SELECT id::text FROM runs WHERE id = ANY(%s::uuid[]) AND status <> ALL(%s)"
    return [r[0] for r in conn.execute(sql, (runs, TERMINAL)).fetchall()]


def test_runs_finish_after_broker_connections_are_cut(
    stack: Stack, credentials: Creds, db: Conn, sink: Sink, queue_backend: str
) -> None:
    needs_rabbitmq(queue_backend)
    runs = start_in_flight_runs(stack, credentials, sink, 6)
    prefix = stack.env["QUEUE_PREFIX"]
    # the API and the workers connect once up (one may still be starting), the orchestrator later
    wait_for(lambda: broker_connections(prefix) >= 3, 30, "the processes' AMQP connections")
    assert close_broker_connections(prefix) >= 3  # API, orchestrator and both workers connect
    time.sleep(1.5)
    close_broker_connections(prefix)
    wait_runs_terminal(db, runs, timeout=40)
    assert_runs_durable(db, {r: "succeeded" for r in runs}, sink)
    assert all(p.alive for p in stack.procs), stack.logs()


def test_runs_finish_after_postgres_connections_are_terminated(
    stack: Stack, credentials: Creds, db: Conn, sink: Sink
) -> None:
    runs = start_in_flight_runs(stack, credentials, sink, 8)
    killed = 0
    for _ in range(10):  # every connection of every process, again and again, while runs move
        killed += terminate_db_backends(db)
        time.sleep(0.3)
    assert killed >= 10, f"only {killed} connections were terminated"
    wait_runs_terminal(db, runs, timeout=40)
    assert_runs_durable(db, {r: "succeeded" for r in runs}, sink)
    assert all(p.alive for p in stack.procs), stack.logs()


def test_a_step_that_cannot_start_fails_its_run_and_the_worker_lives(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    """A ready step whose pinned flow version cannot be decoded (written behind the API's back)
    fails non-retryably; the worker that met it keeps serving other runs (it used to die)."""
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=2)
    api = Api(stack.base_url, *credentials)
    run, steps = insert_run(db, ["a"])
    db.execute("UPDATE steps SET status = 'ready' WHERE id = %s", (steps["a"],))
    db.execute(
        "INSERT INTO outbox (run_id, step_id, token) VALUES (%s, %s, 0)", (run, steps["a"])
    )  # the orchestrator's relay publishes it
    wait_runs_terminal(db, [run], timeout=30)
    status, error = db.execute("SELECT status, error FROM runs WHERE id = %s", (run,)).fetchone()
    assert status == "failed" and "could not start" in error["message"]
    good = api.start_run(api.create_flow(linear_flow(("t", "template", {"template": "ok"})))["id"])
    wait_runs_terminal(db, [good], timeout=30)
    assert_runs_durable(db, {good: "succeeded"})
    assert worker.popen is not None and worker.popen.poll() is None, worker.log_tail()
