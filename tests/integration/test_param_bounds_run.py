"""Numeric param bounds through the API and at run time (issue 9.5: `delay.seconds = 1e300`).

At save, the API answers 422 problem+json naming the field path and the node. At run time a template
that renders an out-of-range number fails its step at once, without retries, instead of poisoning a
durable timer (before: six lease-long retries). A sane templated value still runs.
"""

from __future__ import annotations

from tests.support.client import Api, linear_flow

RETRY = {"wait": {"retry": {"max_attempts": 3, "initial_interval": 0.1}}}


def test_delay_of_1e300_is_refused_at_save_with_its_path(api: Api) -> None:
    defn = linear_flow(("wait", "delay", {"seconds": 1e300}))
    r = api.http.post("/api/v1/flows", json={"name": "bad delay", "definition": defn})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    (error,) = r.json()["errors"]
    assert error["path"] == "definition.nodes[1].data.params.seconds"
    assert error["node_id"] == "wait" and "<=" in error["reason"]


def test_delay_of_1e300_from_a_template_fails_fast_without_retry(api: Api) -> None:
    flow = api.create_flow(
        linear_flow(("wait", "delay", {"seconds": "{{ inputs.s }}"}), retry=RETRY)
    )
    run = api.wait_run(api.start_run(flow["id"], {"s": 1e300}), timeout=20)
    assert run["status"] == "failed"
    assert "invalid params" in run["error"]["message"] and "seconds" in run["error"]["message"]
    assert api.steps(run)["wait"]["attempt"] == 1
    ok = api.wait_run(api.start_run(flow["id"], {"s": 0.1}), timeout=20)
    assert ok["status"] == "succeeded", ok["error"]
