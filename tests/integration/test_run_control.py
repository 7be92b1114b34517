"""Run control over real HTTP and processes: resume, signals (early and late), signal timeouts, fork,
the SSE event log (replay + resume with Last-Event-ID of a finished run; the live stream is in
test_sse_live.py), and Langflow-style sync/streaming runs."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.durability import wait_for
from tests.support.flows import edge, flow_def, node
from tests.support.sink import Sink


def signal_flow(timeout: dict[str, Any] | None = None) -> dict[str, Any]:
    return flow_def(
        [
            node("in", "input"),
            node("approve", "wait_for_signal", **(timeout or {})),
            node("yes", "template", template="approved by {{ approve.by }}"),
            node("late", "template", template="timed out"),
            node("out", "output"),
        ],
        [
            edge("in", "approve"),
            edge("approve", "yes", "out"),
            edge("approve", "late", "timeout"),
            edge("yes", "out"),
            edge("late", "out"),
        ],
    )


def test_signal_completes_a_waiting_node(api: Api, db: psycopg.Connection[Any]) -> None:
    rid = api.start_run(api.create_flow(signal_flow())["id"])
    api.wait_run(rid, statuses=("waiting",))
    r = api.http.post(
        f"/api/v1/runs/{rid}/signal", json={"node_id": "approve", "payload": {"by": "alice"}}
    )
    assert r.status_code == 202 and r.json()["delivered"] is True
    run = api.wait_run(rid)
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "approved by alice"}
    assert api.steps(run)["late"]["status"] == "skipped"
    assert_event_log_consistent(db, rid)


def test_signal_sent_before_the_node_waits_is_buffered(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    # the pause lasts until the test ends it: a 1 s one could be over before the signal arrived
    defn = signal_flow()
    defn["nodes"].insert(1, node("pause", "delay", seconds=3600))
    defn["edges"][0] = edge("in", "pause")
    defn["edges"].insert(1, edge("pause", "approve"))
    rid = api.start_run(api.create_flow(defn)["id"])
    r = api.http.post(
        f"/api/v1/runs/{rid}/signal", json={"node_id": "approve", "payload": {"by": "bob"}}
    )
    assert r.status_code == 202 and r.json()["delivered"] is False
    # the pause's time is up (as if the hour had passed): the orchestrator's timer ends it
    wait_for(lambda: api.steps(api.run(rid))["pause"]["status"] == "waiting", 30, "the pause")
    db.execute(
        "UPDATE steps SET due_at = now() WHERE run_id = %s AND node_id = 'pause'"
        " AND status = 'waiting'",
        (rid,),
    )
    run = api.wait_run(rid)
    assert run["outputs"] == {"text": "approved by bob"}
    assert_event_log_consistent(db, rid)


def test_signal_wait_times_out_by_the_timeout_port(api: Api) -> None:
    rid = api.start_run(
        api.create_flow(signal_flow({"timeout_s": 0.5, "on_timeout": "continue"}))["id"]
    )
    run = api.wait_run(rid)
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "timed out"}
    assert api.steps(run)["yes"]["status"] == "skipped"


def test_signal_wait_timeout_can_fail_the_run(api: Api) -> None:
    rid = api.start_run(api.create_flow(signal_flow({"timeout_s": 0.3}))["id"])
    run = api.wait_run(rid)
    assert run["status"] == "failed" and "signal" in run["error"]["message"]


def test_bad_signal_requests(api: Api) -> None:
    rid = api.start_run(api.create_flow(signal_flow())["id"])
    r = api.http.post(f"/api/v1/runs/{rid}/signal", json={"node_id": "ghost"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.node_id"
    r = api.http.post(f"/api/v1/runs/{rid}/signal", json={"payload": 1})
    assert r.status_code == 422
    api.http.post(f"/api/v1/runs/{rid}/cancel")
    assert (
        api.http.post(f"/api/v1/runs/{rid}/signal", json={"node_id": "approve"}).status_code == 409
    )


def test_resume_reruns_only_the_failed_part(
    api: Api, sink: Sink, db: psycopg.Connection[Any]
) -> None:
    defn = linear_flow(
        ("call", "http_request", {"url": sink.url("/side-effect")}),
        ("f", "fail", {"succeed_on_attempt": 2}),
    )
    rid = api.start_run(api.create_flow(defn)["id"])
    failed = api.wait_run(rid)
    assert failed["status"] == "failed"
    assert api.http.post(f"/api/v1/runs/{rid}/resume").status_code == 202
    run = api.wait_run(rid)
    steps = api.steps(run)
    assert run["status"] == "succeeded" and run["error"] is None
    assert steps["f"]["attempt"] == 2 and steps["call"]["attempt"] == 1
    assert sink.calls[f"{rid}:call:0"] == 1, "a committed step never runs again"
    assert api.http.post(f"/api/v1/runs/{rid}/resume").status_code == 409
    assert_event_log_consistent(db, rid)
    assert_no_double_success(db, rid)


def test_fork_reuses_steps_before_the_node(
    api: Api, sink: Sink, db: psycopg.Connection[Any]
) -> None:
    defn = linear_flow(
        ("call", "http_request", {"url": sink.url("/once")}),
        ("t", "template", {"template": "{{ inputs.greeting }} {{ call.status }}"}),
    )
    rid = api.start_run(api.create_flow(defn)["id"], {"greeting": "hi"})
    assert api.wait_run(rid)["outputs"] == {"text": "hi 200"}
    r = api.http.post(
        f"/api/v1/runs/{rid}/fork", json={"from_node_id": "t", "inputs": {"greeting": "yo"}}
    )
    assert r.status_code == 202, r.text
    child = api.wait_run(r.json()["id"])
    assert child["status"] == "succeeded" and child["outputs"] == {"text": "yo 200"}
    assert child["parent_run_id"] == rid and child["fork_of_node"] == "t"
    assert sink.calls[f"{rid}:call:0"] == 1 and sink.calls[f"{child['id']}:call:0"] == 0
    assert_event_log_consistent(db, child["id"])
    bad = api.http.post(f"/api/v1/runs/{rid}/fork", json={"from_node_id": "nope"})
    assert bad.status_code == 422


def sse_events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":") and ":" in line:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        if fields:
            out.append(fields)
    return out


def test_event_stream_replays_and_resumes_from_last_event_id(api: Api) -> None:
    rid = api.start_run(api.create_flow(linear_flow(("t", "template", {"template": "x"})))["id"])
    api.wait_run(rid)
    full = sse_events(api.http.get(f"/api/v1/runs/{rid}/events").text)
    seqs = [int(e["id"]) for e in full if e.get("event") != "end"]
    assert seqs == list(range(1, len(seqs) + 1)) and full[-1]["event"] == "end"
    tail = sse_events(
        api.http.get(f"/api/v1/runs/{rid}/events", headers={"Last-Event-ID": str(seqs[-3])}).text
    )
    assert [int(e["id"]) for e in tail if e.get("event") != "end"] == seqs[-2:]


def test_sync_run_waits_for_outputs_and_applies_tweaks(api: Api) -> None:
    flow = api.create_flow(
        linear_flow(("t", "template", {"template": "echo {{ inputs.input_value }}"}))
    )
    r = api.http.post(f"/api/v1/run/{flow['id']}", json={"input_value": "hello"})
    assert r.status_code == 200 and r.json()["outputs"] == {"text": "echo hello"}
    r = api.http.post(
        f"/api/v1/run/{flow['id']}",
        json={"input_value": "x", "tweaks": {"t": {"template": "tweaked"}}},
    )
    assert r.json()["outputs"] == {"text": "tweaked"}
    r = api.http.post(f"/api/v1/run/{flow['id']}", json={"tweaks": {"ghost": {}}})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.tweaks.ghost"


def test_sync_run_times_out_into_202_and_the_run_goes_on(api: Api) -> None:
    flow = api.create_flow(linear_flow(("d", "delay", {"seconds": 2})))
    start = time.monotonic()
    r = api.http.post(f"/api/v1/run/{flow['id']}?timeout=0.5", json={"input_value": 1})
    assert r.status_code == 202 and time.monotonic() - start < 5
    assert api.wait_run(r.json()["run_id"])["status"] == "succeeded"


def test_sync_run_streams_step_events_then_outputs(api: Api) -> None:
    flow = api.create_flow(
        linear_flow(("t", "template", {"template": "s {{ inputs.input_value }}"}))
    )
    with api.http.stream(
        "POST", f"/api/v1/run/{flow['id']}?stream=true", json={"input_value": "v"}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events("".join(r.iter_text()))
    assert any(e.get("event") == "step" for e in events)
    end = json.loads(events[-1]["data"])
    assert events[-1]["event"] == "end" and end["outputs"] == {"text": "s v"}


def test_sync_stream_names_its_run_so_a_dropped_stream_resumes_on_the_event_log(api: Api) -> None:
    flow = api.create_flow(
        linear_flow(("t", "template", {"template": "s {{ inputs.input_value }}"}))
    )
    with api.http.stream(
        "POST", f"/api/v1/run/{flow['id']}?stream=true", json={"input_value": "v"}
    ) as r:
        header_id = r.headers["x-run-id"]
        events = sse_events("".join(r.iter_text()))
    first = events[0]
    assert first["event"] == "run" and "id" not in first, first
    assert json.loads(first["data"])["run_id"] == header_id
    assert json.loads(events[-1]["data"])["run_id"] == header_id
    # resume as a client whose stream dropped after its first step event: the rest, nothing twice
    step_ids = [e["id"] for e in events if e.get("event") == "step"]
    tail = sse_events(
        api.http.get(
            f"/api/v1/runs/{header_id}/events", headers={"Last-Event-ID": step_ids[0]}
        ).text
    )
    assert [e["id"] for e in tail if e.get("event") == "step"] == step_ids[1:]
