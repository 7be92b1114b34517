"""Data/control nodes and HTTP auth in real flows: router (ports from its params), merge, JMESPath,
text operations with a regex time limit, and `http_request` auth headers filled from secrets."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent
from tests.support.client import Api, linear_flow
from tests.support.flows import edge, node
from tests.support.sink import Sink


def ref(secret_name: str) -> str:
    return "{{ secrets." + secret_name + " }}"


ROUTER_FLOW = {
    "nodes": [
        node("in", "input"),
        node(
            "r",
            "router",
            routes=[
                {"name": "big", "expression": "inputs.n > 10"},
                {"name": "small", "expression": "input.n > 0"},
            ],
            default="zero",
        ),
        node("b", "template", template="big {{ inputs.n }}"),
        node("s", "template", template="small {{ r.value.n }}"),
        node("z", "template", template="zero"),
        node("m", "merge", mode="first"),
        node("out", "output"),
    ],
    "edges": [
        edge("in", "r"),
        edge("r", "b", "big"),
        edge("r", "s", "small"),
        edge("r", "z", "zero"),
        edge("b", "m"),
        edge("s", "m"),
        edge("z", "m"),
        edge("m", "out"),
    ],
}


def test_router_takes_the_first_matching_route_and_skips_the_others(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    flow = api.create_flow(ROUTER_FLOW)
    for n, taken, text in ((20, "b", "big 20"), (5, "s", "small 5"), (0, "z", "zero")):
        run = api.wait_run(api.start_run(flow["id"], {"n": n}))
        assert run["status"] == "succeeded" and run["outputs"] == {"text": text}
        steps = api.steps(run)
        assert {k for k in ("b", "s", "z") if steps[k]["status"] == "succeeded"} == {taken}
        assert {steps[k]["status"] for k in ("b", "s", "z") if k != taken} == {"skipped"}
        assert steps["r"]["output"]["route"] == {"b": "big", "s": "small", "z": "zero"}[taken]
        assert_event_log_consistent(db, run["id"])


def test_router_ports_come_from_its_routes_when_the_flow_is_saved(api: Api) -> None:
    bad = json.loads(json.dumps(ROUTER_FLOW))
    bad["edges"][1]["sourceHandle"] = "huge"
    r = api.http.post("/api/v1/flows", json={"name": "bad router", "definition": bad})
    assert r.status_code == 422
    assert any("no output port 'huge'" in e["reason"] for e in r.json()["errors"])
    bad_expr = json.loads(json.dumps(ROUTER_FLOW))
    bad_expr["nodes"][1]["data"]["params"]["routes"][0]["expression"] = "inputs.n >"
    run = api.wait_run(api.start_run(api.create_flow(bad_expr)["id"], {"n": 1}))
    assert run["status"] == "failed" and "route 'big'" in run["error"]["message"]


def test_merge_gathers_the_branches_that_ran_as_dict_or_list(api: Api) -> None:
    defn = {
        "nodes": [
            node("in", "input"),
            node("a", "template", template="A{{ inputs.x }}"),
            node("b", "template", template="B{{ inputs.x }}"),
            node("d", "merge"),
            node("l", "merge", mode="list"),
            node("t", "template", template="{{ d.a.text }}+{{ l[1].text }}"),
            node("out", "output"),
        ],
        "edges": [
            edge("in", "a"),
            edge("in", "b"),
            edge("a", "d"),
            edge("b", "d"),
            edge("a", "l"),
            edge("b", "l"),
            edge("d", "t"),
            edge("l", "t"),
            edge("t", "out"),
        ],
    }
    run = api.wait_run(api.start_run(api.create_flow(defn)["id"], {"x": 1}))
    steps = api.steps(run)
    assert steps["d"]["output"] == {"a": {"text": "A1"}, "b": {"text": "B1"}}
    assert steps["l"]["output"] == [{"text": "A1"}, {"text": "B1"}]
    assert run["outputs"] == {"text": "A1+B1"}


def test_json_transform_applies_jmespath(api: Api) -> None:
    flow = api.create_flow(
        linear_flow(
            ("j", "json_transform", {"expression": "items[?score > `5`].name | sort(@)"}),
            ("k", "json_transform", {"expression": "length(@)", "data": "{{ j.result | tojson }}"}),
        )
    )
    items = [{"name": "c", "score": 9}, {"name": "a", "score": 7}, {"name": "b", "score": 1}]
    run = api.wait_run(api.start_run(flow["id"], {"items": items}))
    assert api.steps(run)["j"]["output"] == {"result": ["a", "c"]}
    assert run["outputs"] == {"result": 2}
    bad = api.create_flow(linear_flow(("j", "json_transform", {"expression": "items[?"})))
    run = api.wait_run(api.start_run(bad["id"]))
    assert run["status"] == "failed" and "JMESPath" in run["error"]["message"]


def test_text_ops_split_replace_extract_join(api: Api) -> None:
    text = "order 12 shipped; order 345 pending; ORDER 6 lost"
    flow = api.create_flow(
        {
            "nodes": [
                node("in", "input"),
                node("split", "text_ops", operation="split", text="{{ inputs.t }}", separator="; "),
                node(
                    "ids",
                    "text_ops",
                    operation="extract_all",
                    text="{{ inputs.t }}",
                    pattern=r"order (\d+)",
                    ignore_case=True,
                ),
                node(
                    "red",
                    "text_ops",
                    operation="replace",
                    text="{{ inputs.t }}",
                    pattern=r"\d+",
                    replacement="#",
                ),
                node(
                    "first",
                    "text_ops",
                    operation="extract",
                    text="{{ inputs.t }}",
                    pattern=r"(?P<n>\d+) (?P<s>\w+)",
                ),
                node(
                    "join",
                    "text_ops",
                    operation="join",
                    items="{{ ids.matches | tojson }}",
                    separator=",",
                ),
                node("out", "merge"),
            ],
            "edges": [
                *[edge("in", n) for n in ("split", "ids", "red", "first")],
                edge("ids", "join"),
                *[edge(n, "out") for n in ("split", "red", "first", "join")],
            ],
        }
    )
    run = api.wait_run(api.start_run(flow["id"], {"t": text}))
    assert run["status"] == "succeeded", run["error"]
    s = api.steps(run)
    assert s["split"]["output"]["items"] == text.split("; ")
    assert s["ids"]["output"] == {"matches": ["12", "345", "6"], "count": 3}
    assert s["red"]["output"] == {
        "text": "order # shipped; order # pending; ORDER # lost",
        "count": 3,
    }
    assert s["first"]["output"]["named"] == {"n": "12", "s": "shipped"}
    assert s["join"]["output"] == {"text": "12,345,6"}


def test_catastrophic_regex_and_oversized_text_fail_fast(api: Api) -> None:
    cases = (
        ({"pattern": "(a|aa)+$", "text": "a" * 60 + "!", "timeout_s": 0.3}, "longer than 0.3s"),
        ({"pattern": "a", "text": "x" * 101, "max_length": 100}, "max_length"),
    )
    for params, reason in cases:
        flow = api.create_flow(linear_flow(("re", "text_ops", {"operation": "match", **params})))
        run = api.wait_run(api.start_run(flow["id"]))
        assert run["status"] == "failed" and reason in run["error"]["message"]
        assert api.steps(run)["re"]["attempt"] == 1


def test_http_request_auth_headers_come_from_secrets_and_stay_masked(
    api: Api, sink: Sink, db: psycopg.Connection[Any]
) -> None:
    token, password, key = (f"{p}-{uuid.uuid4().hex}" for p in ("tok", "pw", "key"))
    names = {}
    for label, value in (("T", token), ("P", password), ("A", key)):
        names[label] = f"{label}_{uuid.uuid4().hex[:8]}"
        r = api.http.post("/api/v1/secrets", json={"name": names[label], "value": value})
        assert r.status_code == 201
    auths = {
        "bearer": {"type": "bearer", "token": ref(names["T"])},
        "basic": {"type": "basic", "username": "ada", "password": ref(names["P"])},
        "apikey": {
            "type": "api_key",
            "header": "X-Api-Key",
            "value": ref(names["A"]),
        },
    }
    nodes = [node("in", "input")]
    for nid, auth in auths.items():
        nodes.append(node(nid, "http_request", url=sink.url(f"/{nid}"), auth=auth))
    flow = api.create_flow({"nodes": nodes, "edges": [edge("in", nid) for nid in auths]})
    run = api.wait_run(api.start_run(flow["id"]))
    assert run["status"] == "succeeded", run["error"]
    seen = {
        r["path"]: r["headers"]
        for r in sink.requests
        if r["headers"].get("Idempotency-Key", "").startswith(run["id"])
    }
    assert seen["/bearer"]["Authorization"] == f"Bearer {token}"
    assert (
        seen["/basic"]["Authorization"]
        == "Basic " + base64.b64encode(f"ada:{password}".encode()).decode()
    )
    assert seen["/apikey"]["X-Api-Key"] == key
    dump = json.dumps(api.run(run["id"])) + "".join(
        str(r[0]) for r in db.execute("SELECT data FROM run_events WHERE run_id = %s", (run["id"],))
    )
    assert not any(v in dump for v in (token, password, key))
