"""Fan-out/fan-in and child runs on the real engine: `map` over items (node body and flow body,
concurrency limit, failure policies) and `subflow` (durable child run, linked both ways)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.flows import map_flow
from tests.support.sink import Sink


def test_map_runs_each_item_as_a_step_and_keeps_order(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    flow = api.create_flow(map_flow({"type": "template", "params": {"template": "<{{ item }}>"}}))
    rid = api.start_run(flow["id"], {"xs": list(range(25))})
    run = api.wait_run(rid, timeout=60)
    assert run["status"] == "succeeded", run["error"]
    assert run["outputs"] == [{"text": f"<{i}>"} for i in range(25)]
    items = [s for s in run["steps"] if s["node_id"] == "m" and s["item_index"] > 0]
    assert sorted(s["item_index"] for s in items) == list(range(1, 26))
    assert all(s["status"] == "succeeded" and s["attempt"] == 1 for s in items)
    assert_event_log_consistent(db, rid)
    assert_no_double_success(db, rid)


def test_map_respects_the_concurrency_limit(
    api: Api, sink: Sink, db: psycopg.Connection[Any]
) -> None:
    body = {"type": "http_request", "params": {"url": sink.url("/item", sleep=0.3)}}
    rid = api.start_run(
        api.create_flow(map_flow(body, concurrency=2))["id"], {"xs": list(range(6))}
    )
    run = api.wait_run(rid, timeout=60)
    assert run["status"] == "succeeded"
    spans = sorted((s["started_at"], s["finished_at"]) for s in run["steps"] if s["item_index"] > 0)
    for i, (start, _) in enumerate(spans):
        overlapping = sum(1 for s, f in spans if s <= start < f)
        assert overlapping <= 2, f"item {i}: {overlapping} items ran at once"
    assert all(sink.calls[f"{rid}:m:{i}"] == 1 for i in range(1, 7))


def test_map_fail_fast_fails_the_run(api: Api) -> None:
    body = {"type": "fail", "params": {"message": "bad item"}}
    run = api.wait_run(api.start_run(api.create_flow(map_flow(body))["id"], {"xs": [1, 2, 3]}))
    assert run["status"] == "failed" and run["error"]["node_id"] == "m"


def test_map_continue_policy_collects_errors_in_place(api: Api) -> None:
    defn = linear_flow(
        (
            "m",
            "map",
            {
                "items": "inputs.xs",
                "on_error": "continue",
                "body": {"type": "condition", "params": {"expression": "item > 0 or fail_here()"}},
            },
        )
    )
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"xs": [1, 0, 2]}))
    assert run["status"] == "succeeded"
    out = run["outputs"]
    assert out[0]["result"] is True and out[2]["result"] is True
    assert out[1]["status"] == "failed" and "error" in out[1]


def test_map_with_a_flow_body_runs_child_runs(api: Api, db: psycopg.Connection[Any]) -> None:
    child = api.create_flow(
        linear_flow(("t", "template", {"template": "child {{ inputs.input }}"}))
    )
    rid = api.start_run(
        api.create_flow(map_flow({"flow_id": child["id"]}))["id"], {"xs": ["a", "b"]}
    )
    run = api.wait_run(rid, timeout=60)
    assert run["status"] == "succeeded", run
    assert run["outputs"] == [{"text": "child a"}, {"text": "child b"}]
    (n,) = db.execute("SELECT count(*) FROM runs WHERE parent_run_id = %s", (rid,)).fetchone()
    assert n == 2


def test_subflow_runs_a_linked_child_run(api: Api, db: psycopg.Connection[Any]) -> None:
    child = api.create_flow(linear_flow(("t", "template", {"template": "hello {{ inputs.name }}"})))
    parent = api.create_flow(
        linear_flow(
            ("sub", "subflow", {"flow_id": child["id"]}),
            ("after", "template", {"template": "{{ sub.text }}!"}),
        )
    )
    rid = api.start_run(parent["id"], {"name": "kid"})
    run = api.wait_run(rid, timeout=60)
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "hello kid!"}
    child_id, step_id = db.execute(
        "SELECT id, parent_step_id FROM runs WHERE parent_run_id = %s", (rid,)
    ).fetchone()
    assert step_id == api.steps(run)["sub"]["id"]
    assert api.run(str(child_id))["status"] == "succeeded"
    assert_event_log_consistent(db, rid)


def test_failed_child_fails_the_subflow_step(api: Api) -> None:
    child = api.create_flow(linear_flow(("f", "fail", {"message": "child broke"})))
    parent = api.create_flow(linear_flow(("sub", "subflow", {"flow_id": child["id"]})))
    run = api.wait_run(api.start_run(parent["id"]), timeout=60)
    assert run["status"] == "failed" and "child run" in run["error"]["message"]


def test_subflow_of_another_users_flow_is_refused(
    api: Api, database_url: str, running_stack: Any
) -> None:
    from tests.conftest import make_user

    other = Api(running_stack.base_url, *make_user(database_url))
    theirs = other.create_flow(linear_flow(("t", "template", {"template": "secret"})))
    mine = api.create_flow(linear_flow(("sub", "subflow", {"flow_id": theirs["id"]})))
    run = api.wait_run(api.start_run(mine["id"]))
    assert run["status"] == "failed" and "not found" in run["error"]["message"]
