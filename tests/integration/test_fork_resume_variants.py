"""Fork, resume and child runs beyond the straight line, over the session stack (`api`).

- fork on a flow with parallel branches, a condition (one branch skipped) and a join: from a node
  inside the taken branch (the skipped branch and the other branch are copied, not re-run) and from
  the condition with inputs that take the other branch (it is re-evaluated);
- fork around a map node: from the map with new items (the items run again, upstream is copied),
  and from downstream of the map (every item is copied, none runs again);
- fork from a failed run with inputs that make the failed node pass;
- resume of a cancelled run (the committed steps are kept, the cancelled wait runs again);
- a subflow runs its pinned version (`version` param, else the child's published version);
- a parent that ends (cancelled, or failed by another branch) cancels its live child run.
Side effects are counted by the sink per Idempotency-Key (`{run}:{node}:{item}`).
"""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.durability import wait_for
from tests.support.flows import edge, map_flow, node
from tests.support.sink import Sink

Conn = psycopg.Connection[Any]


def fork(api: Api, rid: str, node: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"from_node_id": node}
    if inputs is not None:
        body["inputs"] = inputs
    r = api.http.post(f"/api/v1/runs/{rid}/fork", json=body)
    assert r.status_code == 202, r.text
    return api.wait_run(r.json()["id"], timeout=60)


def statuses(run: dict[str, Any]) -> dict[str, str]:
    return {s["node_id"]: s["status"] for s in run["steps"] if s["item_index"] == 0}


def branchy_flow(sink: Sink) -> dict[str, Any]:
    """in -> c (condition) -true-> hi -> m ; -false-> lo -> lo2 -> m ; in -> b -> m ; m -> t -> out."""
    return {
        "nodes": [
            node("in", "input"),
            node("c", "condition", expression="inputs.x > 5"),
            node("hi", "http_request", url=sink.url("/hi")),
            node("lo", "http_request", url=sink.url("/lo")),
            node("lo2", "noop"),
            node("b", "http_request", url=sink.url("/b")),
            node("m", "noop"),
            node("t", "template", template="{{ inputs.x }} {{ b.status }}"),
            node("out", "output"),
        ],
        "edges": [
            edge("in", "c"),
            edge("c", "hi", "true"),
            edge("c", "lo", "false"),
            edge("lo", "lo2"),
            edge("in", "b"),
            edge("hi", "m"),
            edge("lo2", "m"),
            edge("b", "m"),
            edge("m", "t"),
            edge("t", "out"),
        ],
    }


def test_fork_on_branches_a_skipped_branch_and_a_join(api: Api, sink: Sink, db: Conn) -> None:
    rid = api.start_run(api.create_flow(branchy_flow(sink))["id"], {"x": 9})
    parent = api.wait_run(rid)
    assert parent["status"] == "succeeded" and parent["outputs"] == {"text": "9 200"}
    assert statuses(parent)["lo"] == statuses(parent)["lo2"] == "skipped"

    # from inside the taken branch: b and the skipped branch are copied; hi and the join re-run
    child = fork(api, rid, "hi", {"x": 7})
    cid = child["id"]
    assert child["status"] == "succeeded" and child["outputs"] == {"text": "7 200"}
    assert statuses(child) == {
        **{k: "succeeded" for k in ("in", "c", "hi", "b", "m", "t", "out")},
        "lo": "skipped",
        "lo2": "skipped",
    }
    assert (sink.calls[f"{cid}:hi:0"], sink.calls[f"{cid}:b:0"], sink.calls[f"{rid}:b:0"]) == (
        1,
        0,
        1,
    )
    copied = {
        r[0]
        for r in db.execute(
            "SELECT node_id FROM run_events WHERE run_id = %s AND kind = 'step' "
            "AND from_status IS NULL",
            (cid,),
        )
    }
    assert copied == {"in", "c", "b", "lo", "lo2"}

    # from the condition with inputs that take the other branch: it is evaluated again
    other = fork(api, rid, "c", {"x": 1})
    oid = other["id"]
    assert other["status"] == "succeeded" and other["outputs"] == {"text": "1 200"}
    assert statuses(other)["hi"] == "skipped" and statuses(other)["lo2"] == "succeeded"
    assert (sink.calls[f"{oid}:lo:0"], sink.calls[f"{oid}:hi:0"], sink.calls[f"{oid}:b:0"]) == (
        1,
        0,
        0,
    )
    for run_id in (cid, oid):
        assert_event_log_consistent(db, run_id)
        assert_no_double_success(db, run_id)


def test_fork_around_a_map_node(api: Api, sink: Sink, db: Conn) -> None:
    defn = map_flow({"type": "http_request", "params": {"url": sink.url("/item/{{ item }}")}})
    rid = api.start_run(api.create_flow(defn)["id"], {"xs": [1, 2, 3]})
    parent = api.wait_run(rid, timeout=60)
    assert parent["status"] == "succeeded" and len(parent["outputs"]) == 3

    again = fork(api, rid, "m", {"xs": [4, 5]})  # new items: the map runs again
    aid = again["id"]
    assert again["status"] == "succeeded"
    assert [o["body"]["path"] for o in again["outputs"]] == ["/item/4", "/item/5"]
    assert [sink.calls[f"{aid}:m:{i}"] for i in (1, 2, 3)] == [1, 1, 0]

    after = fork(api, rid, "out")  # downstream of the map: every item is copied
    fid = after["id"]
    assert after["status"] == "succeeded" and after["outputs"] == parent["outputs"]
    assert [sink.calls[f"{fid}:m:{i}"] for i in (1, 2, 3)] == [0, 0, 0]
    items = [s for s in after["steps"] if s["node_id"] == "m" and s["item_index"] > 0]
    assert sorted(s["item_index"] for s in items) == [1, 2, 3]
    for run_id in (aid, fid):
        assert_event_log_consistent(db, run_id)
        assert_no_double_success(db, run_id)


def test_fork_from_a_failed_run_with_inputs_that_fix_it(api: Api, sink: Sink, db: Conn) -> None:
    defn = linear_flow(
        ("call", "http_request", {"url": sink.url("/once")}),
        ("check", "http_request", {"url": sink.url("/check") + "?status={{ inputs.code }}"}),
    )
    rid = api.start_run(api.create_flow(defn)["id"], {"code": 500})
    failed = api.wait_run(rid)
    assert failed["status"] == "failed" and failed["error"]["node_id"] == "check"
    child = fork(api, rid, "check", {"code": 200})
    assert child["status"] == "succeeded" and child["outputs"]["status"] == 200
    assert sink.calls[f"{rid}:call:0"] == 1 and sink.calls[f"{child['id']}:call:0"] == 0
    assert api.run(rid)["status"] == "failed"  # the parent is left as it was
    assert_event_log_consistent(db, child["id"])


def test_resume_of_a_cancelled_run_keeps_committed_steps(api: Api, sink: Sink, db: Conn) -> None:
    defn = linear_flow(
        ("call", "http_request", {"url": sink.url("/before")}),
        ("approve", "wait_for_signal", {}),
        ("t", "template", {"template": "ok {{ approve.by }}"}),
    )
    rid = api.start_run(api.create_flow(defn)["id"])
    api.wait_run(rid, statuses=("waiting",))
    assert api.http.post(f"/api/v1/runs/{rid}/cancel").status_code == 202
    assert api.wait_run(rid)["status"] == "cancelled"
    r = api.http.post(f"/api/v1/runs/{rid}/resume")
    assert r.status_code == 202, r.text
    waiting = api.wait_run(rid, statuses=("waiting",))
    assert api.steps(waiting)["approve"]["status"] == "waiting"
    r = api.http.post(
        f"/api/v1/runs/{rid}/signal", json={"node_id": "approve", "payload": {"by": "bo"}}
    )
    assert r.status_code == 202 and r.json()["delivered"] is True
    run = api.wait_run(rid)
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "ok bo"}
    assert sink.calls[f"{rid}:call:0"] == 1 and api.steps(run)["call"]["attempt"] == 1
    assert_event_log_consistent(db, rid)
    assert_no_double_success(db, rid)


def test_a_subflow_runs_its_pinned_version(api: Api, db: Conn) -> None:
    child = api.create_flow(linear_flow(("t", "template", {"template": "one"})))
    cid = child["id"]
    r = api.http.put(
        f"/api/v1/flows/{cid}",
        json={"definition": linear_flow(("t", "template", {"template": "two"}))},
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    pinned = api.create_flow(linear_flow(("sub", "subflow", {"flow_id": cid, "version": 1})))
    latest = api.create_flow(linear_flow(("sub", "subflow", {"flow_id": cid})))
    assert api.wait_run(api.start_run(pinned["id"]))["outputs"] == {"text": "one"}
    assert api.wait_run(api.start_run(latest["id"]))["outputs"] == {"text": "two"}
    assert api.http.post(f"/api/v1/flows/{cid}/publish", json={"version": 1}).status_code == 200
    rid = api.start_run(latest["id"])  # unpinned: the child's published version
    assert api.wait_run(rid)["outputs"] == {"text": "one"}
    (version,) = db.execute(
        "SELECT flow_version FROM runs WHERE parent_run_id = %s", (rid,)
    ).fetchone()
    assert version == 1


def child_waiting(api: Api, db: Conn, parent_id: str) -> str:
    def child() -> str | None:
        row = db.execute(
            "SELECT id::text, status FROM runs WHERE parent_run_id = %s", (parent_id,)
        ).fetchone()
        return row[0] if row and row[1] == "waiting" else None

    wait_for(lambda: child() is not None, 30, "the child run to wait")
    cid = child()
    assert cid is not None
    return cid


def test_a_parent_that_ends_cancels_its_live_children(api: Api, db: Conn) -> None:
    waits = api.create_flow(linear_flow(("hold", "wait_for_signal", {})))
    parent = api.create_flow(linear_flow(("sub", "subflow", {"flow_id": waits["id"]})))
    rid = api.start_run(parent["id"])
    cid = child_waiting(api, db, rid)
    assert api.http.post(f"/api/v1/runs/{rid}/cancel").status_code == 202
    assert api.wait_run(cid)["status"] == "cancelled"  # cancelled with its parent

    # a parent failed by another branch also takes its live child down (that branch fails when
    # the test says so, once the child is seen waiting: a timed branch raced the child's start)
    failing = api.create_flow(
        {
            "nodes": [
                node("in", "input"),
                node("sub", "subflow", flow_id=waits["id"]),
                node("go", "wait_for_signal"),
                node("boom", "fail", message="other branch", retryable=False),
                node("out", "output"),
            ],
            "edges": [
                edge("in", "sub"),
                edge("in", "go"),
                edge("go", "boom", "out"),
                edge("sub", "out"),
                edge("boom", "out"),
            ],
        }
    )
    rid2 = api.start_run(failing["id"])
    cid2 = child_waiting(api, db, rid2)
    r = api.http.post(f"/api/v1/runs/{rid2}/signal", json={"node_id": "go", "payload": {}})
    assert r.status_code == 202, r.text  # delivered, or buffered until `go` waits
    assert api.wait_run(rid2)["status"] == "failed"
    assert api.wait_run(cid2)["status"] == "cancelled"
    for run_id in (rid, cid, rid2, cid2):
        assert_event_log_consistent(db, run_id)
