"""GET /api/v1/ops/stats over the real stack: counts, durations, failing nodes, workers, scoping.

One test drives a succeeding and a failing flow through the `api` fixture's editor, then reads the
dashboard snapshot; the others check that a second editor sees none of those runs and that a viewer
(no ops:read) is refused. The queue-depth test runs an API with no worker on a database and queue of
its own, so the depth it reads is exactly the messages it published.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.durability import wait_for
from tests.support.infra import delete_queue, private_database
from tests.support.stack import Stack


def stats(api: Api, **params: Any) -> dict[str, Any]:
    r = api.http.get("/api/v1/ops/stats", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_ops_stats_counts_runs_durations_failures_and_workers(
    api: Api, running_stack: Stack, database_url: str
) -> None:
    ok_flow = api.create_flow(linear_flow(("t", "template", {"template": "hi"})), name="ops ok")
    bad_flow = api.create_flow(
        linear_flow(("boom", "fail", {"message": "kaput", "retryable": False})), name="ops bad"
    )
    ok_runs = [api.start_run(ok_flow["id"]) for _ in range(3)]
    bad_run = api.start_run(bad_flow["id"])
    for run_id in ok_runs:
        assert api.wait_run(run_id)["status"] == "succeeded"
    assert api.wait_run(bad_run)["status"] == "failed"

    s = stats(api, minutes=10, bucket_seconds=60)
    assert s["scope"] == "own"
    assert s["runs_by_status"].get("succeeded", 0) >= 3
    assert s["runs_by_status"].get("failed", 0) >= 1
    assert sum(b["succeeded"] for b in s["throughput"]) >= 3
    assert sum(b["failed"] for b in s["throughput"]) >= 1
    assert len(s["throughput"]) in (10, 11)
    flows = {f["flow_id"]: f for f in s["flow_durations"]}
    assert flows[ok_flow["id"]]["runs"] == 3
    assert 0 <= flows[ok_flow["id"]]["p50_s"] <= flows[ok_flow["id"]]["p95_s"]
    assert "template" in {n["node_type"] for n in s["node_durations"]}
    failing = [n for n in s["failing_nodes"] if n["flow_id"] == bad_flow["id"]]
    assert failing and failing[0]["node_id"] == "boom" and failing[0]["failures"] == 1
    assert "kaput" in (failing[0]["last_error"] or "")
    assert isinstance(s["queue_depth"], int)  # its exact value: the test below
    assert s["processes"], "heartbeats are shown to editors too"
    for p in s["processes"]:  # ... but not where the processes run
        assert p["hostname"] == "" and p["pid"] == 0 and ":" not in p["id"], p
    admin = Api(running_stack.base_url, *make_user(database_url, "admin"))
    workers = [p for p in stats(admin)["processes"] if p["kind"] == "worker"]
    assert len(workers) >= 2
    # SIGKILLed workers of other tests linger with old heartbeats (the dashboard shows them stale)
    assert sum(p["heartbeat_age_s"] < 30 for p in workers) >= 2


def test_ops_stats_of_another_editor_do_not_include_my_runs(
    api: Api, running_stack: Stack, database_url: str
) -> None:
    flow = api.create_flow(linear_flow(), name="ops private")
    api.wait_run(api.start_run(flow["id"]))
    other = Api(running_stack.base_url, *make_user(database_url, "editor"))
    s = stats(other)
    assert s["scope"] == "own"
    assert s["runs_by_status"] == {}
    assert flow["id"] not in {f["flow_id"] for f in s["flow_durations"]}


def test_ops_stats_need_ops_read_and_a_sane_window(
    api: Api, running_stack: Stack, database_url: str
) -> None:
    viewer = Api(running_stack.base_url, *make_user(database_url, "viewer"))
    assert viewer.http.get("/api/v1/ops/stats").status_code == 403
    r = api.http.get("/api/v1/ops/stats", params={"minutes": 0})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "query.minutes"


def test_ops_queue_depth_counts_the_messages_waiting_for_a_worker(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"fsops_{uuid.uuid4().hex[:8]}"
    with private_database("fs_ops") as url:
        stack = Stack({**base_env, "DATABASE_URL": url, "QUEUE_PREFIX": prefix}, tmp_path)
        try:
            stack.start_api()  # no worker and no orchestrator: published messages stay queued
            api = Api(stack.base_url, *make_user(url, "editor"))
            flow = api.create_flow(linear_flow(("t", "template", {"template": "x"})))
            runs = [api.start_run(flow["id"]) for _ in range(5)]
            assert stats(api)["queue_depth"] == 5
            stack.start_worker(concurrency=4)
            for rid in runs:
                assert api.wait_run(rid)["status"] == "succeeded"
            wait_for(lambda: stats(api)["queue_depth"] == 0, 10, "the queue to drain")
        finally:
            stack.stop_all()
            delete_queue(f"{prefix}.steps")
