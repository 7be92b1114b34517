"""Flows through the whole real path: API -> PostgreSQL -> RabbitMQ -> worker processes -> commit.

Each test creates a flow over HTTP, starts a run, waits for it, and checks the steps and the event log
in PostgreSQL (`support/checks.py`).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.durability import wait_for
from tests.support.flows import branch_flow, edge, node
from tests.support.sink import Sink


def test_linear_template_flow_outputs_rendered_text(api: Api, db: psycopg.Connection[Any]) -> None:
    flow = api.create_flow(linear_flow(("t", "template", {"template": "hi {{ inputs.name }}"})))
    run = api.wait_run(api.start_run(flow["id"], {"name": "ada"}))
    assert run["status"] == "succeeded"
    assert run["outputs"] == {"text": "hi ada"}
    assert {s["node_id"]: s["attempt"] for s in run["steps"]} == {"in": 1, "t": 1, "out": 1}
    assert_event_log_consistent(db, run["id"])


def test_parallel_branches_join_once(api: Api, db: psycopg.Connection[Any]) -> None:
    branches = [f"b{i}" for i in range(6)]
    defn = {
        "nodes": [
            node("in", "input"),
            *[node(b, "template", template=f"{b}={{{{ inputs.x }}}}") for b in branches],
            node(
                "join",
                "template",
                template="{{ " + " ~ ".join(f"{b}.text" for b in branches) + " }}",
            ),
            node("out", "output"),
        ],
        "edges": [
            *[edge("in", b) for b in branches],
            *[edge(b, "join") for b in branches],
            edge("join", "out"),
        ],
    }
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"x": 7}))
    assert run["status"] == "succeeded"
    assert run["outputs"]["text"] == "".join(f"{b}=7" for b in branches)
    steps = api.steps(run)
    assert steps["join"]["attempt"] == 1
    assert max(steps[b]["finished_at"] for b in branches) <= steps["join"]["started_at"]
    assert_event_log_consistent(db, run["id"])
    assert_no_double_success(db, run["id"])


def test_condition_skips_the_untaken_branch_and_merge_runs(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    defn = branch_flow()
    flow = api.create_flow(defn)
    high = api.wait_run(api.start_run(flow["id"], {"score": 9}))
    low = api.wait_run(api.start_run(flow["id"], {"score": 1}))
    hs, ls = api.steps(high), api.steps(low)
    assert (hs["hi"]["status"], hs["lo"]["status"], hs["lo2"]["status"]) == (
        "succeeded",
        "skipped",
        "skipped",
    )
    assert (ls["hi"]["status"], ls["lo"]["status"], ls["lo2"]["status"]) == (
        "skipped",
        "succeeded",
        "succeeded",
    )
    assert high["outputs"] == {"text": "high"} and low["outputs"] == {"text": "low"}
    for r in (high, low):
        assert r["status"] == "succeeded"
        assert_event_log_consistent(db, r["id"])


def test_flaky_node_is_retried_with_backoff_then_succeeds(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    """Each retry is scheduled `initial_interval * backoff ** (attempt - 1)` (capped at max_interval)
    after the failed attempt: the due time each retry gets is read from the step row while it waits
    and compared with the time its `-> retrying` checkpoint was logged."""
    # the shortest wait (1 s) is long enough for the 20 ms poll below to see on a slow machine
    policy = {"max_attempts": 5, "initial_interval": 1.0, "backoff": 2, "max_interval": 3}
    defn = linear_flow(("f", "fail", {"succeed_on_attempt": 4}), retry={"f": {"retry": policy}})
    rid = api.start_run(api.create_flow(defn)["id"])
    due: dict[int, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # poll PostgreSQL directly: a 1 s wait is short
        row = db.execute(
            "SELECT s.status, s.attempt, s.due_at, r.status FROM steps s JOIN runs r "
            "ON r.id = s.run_id WHERE s.run_id = %s AND s.node_id = 'f'",
            (rid,),
        ).fetchone()
        if row is not None and row[0] == "retrying":
            due[row[1]] = row[2]
        if row is not None and row[3] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.02)
    run = api.run(rid)
    assert run["status"] == "succeeded"
    f = api.steps(run)["f"]
    assert f["attempt"] == 4 and f["output"]["attempt"] == 4
    retries = db.execute(
        "SELECT attempt, at FROM run_events WHERE run_id = %s AND node_id = 'f' "
        "AND to_status = 'retrying' ORDER BY seq",
        (rid,),
    ).fetchall()
    assert [a for a, _ in retries] == [1, 2, 3] == sorted(due), (retries, due)
    intervals = [(due[a] - at).total_seconds() for a, at in retries]
    # due_at = the transaction's now() + interval; the event is logged a few ms into it.
    for got, want in zip(intervals, [1.0, 2.0, 3.0], strict=True):  # 4 s capped at 3
        assert want - 0.25 < got <= want + 0.001, f"retry intervals {intervals}"
    fired = db.execute(
        "SELECT at FROM run_events WHERE run_id = %s AND node_id = 'f' "
        "AND from_status = 'retrying' AND to_status = 'ready' ORDER BY seq",
        (rid,),
    ).fetchall()
    assert all(fire >= due[a] for (fire,), (a, _) in zip(fired, retries, strict=True))
    assert_event_log_consistent(db, rid)


def test_retries_exhausted_fail_the_run_with_the_error(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    defn = linear_flow(
        ("f", "fail", {"message": "boom"}),
        retry={"f": {"retry": {"max_attempts": 2, "initial_interval": 0.1}}},
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"]))
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "f" and run["error"]["message"] == "boom"
    steps = api.steps(run)
    assert steps["f"]["status"] == "failed" and steps["f"]["attempt"] == 2
    assert steps["out"]["status"] == "cancelled"
    assert_event_log_consistent(db, run["id"])


def test_non_retryable_error_fails_at_once(api: Api) -> None:
    defn = linear_flow(
        ("f", "fail", {"retryable": False}),
        retry={"f": {"retry": {"max_attempts": 5, "initial_interval": 0.1}}},
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"]))
    assert run["status"] == "failed" and api.steps(run)["f"]["attempt"] == 1


def test_timeout_is_a_failed_attempt(api: Api, sink: Sink) -> None:
    defn = linear_flow(
        ("slow", "http_request", {"url": sink.url("/slow", sleep=5)}),
        retry={"slow": {"timeout_s": 0.5, "retry": {"max_attempts": 2, "initial_interval": 0.1}}},
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"]), timeout=30)
    assert run["status"] == "failed"
    slow = api.steps(run)["slow"]
    assert slow["attempt"] == 2 and "timed out" in slow["error"]["message"]


def test_durable_delay_waits_then_continues(api: Api, db: psycopg.Connection[Any]) -> None:
    defn = linear_flow(("d", "delay", {"seconds": 1.5}), ("t", "template", {"template": "after"}))
    rid = api.start_run(api.create_flow(defn)["id"])
    # the 1.5 s wait may be over before a poll sees it (slow machine): the row is checked when
    # seen, the event log always
    seen = api.wait_run(rid, statuses=("waiting", "succeeded", "failed", "cancelled"), timeout=10)
    if seen["status"] == "waiting":
        assert api.steps(seen)["d"]["status"] == "waiting" and api.steps(seen)["d"]["due_at"]
    run = api.wait_run(rid)
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "after"}
    moves = db.execute(
        """SELECT kind, node_id, from_status, to_status, data FROM run_events
           WHERE run_id = %s AND (kind = 'run' OR node_id = 'd') ORDER BY seq""",
        (rid,),
    ).fetchall()
    parked = [(k, n, f, t) for k, n, f, t, _ in moves if "waiting" in (f, t)]
    assert parked == [
        ("step", "d", "running", "waiting"),
        ("run", None, "running", "waiting"),
        ("step", "d", "waiting", "succeeded"),
        ("run", None, "waiting", "running"),
    ], moves
    # a durable timer: parked for its seconds, ended by the orchestrator's timer pass
    assert [data for k, _, f, t, data in moves if k == "step" and "waiting" in (f, t)] == [
        {"seconds": 1.5},
        {"timer": "delay"},
    ], moves
    d = api.steps(run)["d"]
    from datetime import datetime

    took = datetime.fromisoformat(d["finished_at"]) - datetime.fromisoformat(d["started_at"])
    assert took.total_seconds() >= 1.4
    assert_event_log_consistent(db, rid)


def test_http_request_sends_idempotency_key(api: Api, sink: Sink) -> None:
    defn = linear_flow(
        (
            "call",
            "http_request",
            {"method": "POST", "url": sink.url("/x"), "body": '{"name": "{{ inputs.name }}"}'},
        )
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"name": "zed"}))
    assert run["status"] == "succeeded"
    key = f"{run['id']}:call:0"
    assert sink.calls[key] == 1
    assert run["outputs"]["status"] == 200 and run["outputs"]["body"]["key"] == key


def test_cpu_bound_node_runs_in_the_process_pool(api: Api) -> None:
    defn = linear_flow(("h", "hash", {"text": "{{ inputs.t }}", "rounds": 3}))
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"t": "abc"}))
    import hashlib

    d = b"abc"
    for _ in range(3):
        d = hashlib.sha256(d).digest()
    assert run["status"] == "succeeded" and run["outputs"]["digest"] == d.hex()


def test_cancel_reaches_a_running_step(api: Api, sink: Sink, db: psycopg.Connection[Any]) -> None:
    defn = linear_flow(
        ("slow", "http_request", {"url": sink.url("/slow", sleep=20)}),
        ("after", "http_request", {"url": sink.url("/after")}),
    )
    rid = api.start_run(api.create_flow(defn)["id"])
    key = f"{rid}:slow:0"
    wait_for(lambda: sink.calls[key] == 1, 15, "the slow call to reach the sink")
    r = api.http.post(f"/api/v1/runs/{rid}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    run = api.wait_run(rid)
    steps = api.steps(run)
    assert run["status"] == "cancelled"
    assert steps["slow"]["status"] == "cancelled" and steps["after"]["status"] == "cancelled"
    assert api.http.post(f"/api/v1/runs/{rid}/cancel").status_code == 409
    # The execution was abandoned: the worker hung up on the call long before its 20 s answer
    # (the sink sees the connection close), so no result can be committed after the cancel.
    wait_for(lambda: sink.abandoned[key] == 1, 10, "the worker to abandon the running call")
    assert sink.answered[key] == 0 and sink.calls[f"{rid}:after:0"] == 0
    (successes,) = db.execute(
        "SELECT count(*) FROM run_events WHERE run_id = %s AND to_status = 'succeeded' "
        "AND node_id IN ('slow', 'after')",
        (rid,),
    ).fetchone()
    assert successes == 0 and api.run(rid)["status"] == "cancelled"
    assert_event_log_consistent(db, rid)


def test_same_idempotency_key_returns_the_same_run(api: Api) -> None:
    flow = api.create_flow(linear_flow(("t", "template", {"template": "x"})))
    a = api.start_run(flow["id"], key="same-key-1")
    b = api.start_run(flow["id"], key="same-key-1")
    c = api.start_run(flow["id"], key="other-key")
    assert a == b != c
