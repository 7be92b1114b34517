"""Issue 9 item 5 replayed: template and regex stalls on ONE worker, with its own database and queue.

A template with a loop (within the loop budget, heavy per iteration) on a node with `timeout_s: 3`,
and a catastrophic regex with an author-chosen 6 s timeout (server cap REGEX_TIMEOUT_MAX_S set to
3 s here), do not hold the worker's event loop: a fast run started after them finishes first on the
same (only) worker, `/health/live` answers meanwhile, the template fails at its node timeout and the
regex at the server cap. The attack as filed (nested `range(10000)` loops, `timeout_s: 1`) fails
non-retryably on the loop budget, and `'x' * 10**8` is refused by the size limit. The module has its
own database and queue (`tests/support/private_stack.py`): the session's shared workers would
otherwise take some of these steps and prove nothing about this worker.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.client import Api, linear_flow
from tests.support.flows import edge, flow_def, node
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack

HEAVY_TEMPLATE = (
    "{% set s = 'x' * 900000 %}"
    "{% for i in range(10000) %}{{ (s | replace('x', 'y')) | length > 0 }}{% endfor %}"
)
CATASTROPHIC = {"operation": "match", "pattern": "(a|aa)+$", "text": "a" * 40 + "b", "timeout_s": 6}


@pytest.fixture
def one_worker(stack: Stack, credentials: tuple[str, str]) -> Api:
    """The only worker on a database and queue of this module's own (no shared stack helps)."""
    stack.start_api()
    stack.start_orchestrator()
    stack.start_worker(concurrency=4, extra_env={"REGEX_TIMEOUT_MAX_S": "3"})
    return Api(stack.base_url, *credentials)


def test_heavy_templates_and_regexes_never_hold_the_worker(one_worker: Api) -> None:
    api = one_worker
    heavy_t = api.create_flow(
        flow_def(
            [
                node("in", "input"),
                node("t", "template", {"timeout_s": 3}, template=HEAVY_TEMPLATE),
                node("out", "output"),
            ],
            [edge("in", "t"), edge("t", "out")],
        )
    )
    heavy_rx = api.create_flow(linear_flow(("rx", "text_ops", CATASTROPHIC)))
    fast_flow = api.create_flow(linear_flow(("f", "template", {"template": "ok"})))
    heavy = {"t": api.start_run(heavy_t["id"]), "rx": api.start_run(heavy_rx["id"])}
    deadline = time.monotonic() + 30
    while not all(
        api.steps(api.run(rid))[nid]["status"] == "running" for nid, rid in heavy.items()
    ):
        assert time.monotonic() < deadline, [api.run(rid) for rid in heavy.values()]
        time.sleep(0.02)
    live: list[int] = []

    def probe() -> None:
        live.append(httpx.get(f"{api.http.base_url}/health/live", timeout=10).status_code)

    prober = threading.Thread(target=probe)
    prober.start()
    fast_run = api.wait_run(api.start_run(fast_flow["id"]), timeout=60)
    prober.join()
    assert fast_run["status"] == "succeeded" and live == [200]
    steps = {nid: api.steps(api.wait_run(rid, timeout=60))[nid] for nid, rid in heavy.items()}
    for nid, step in steps.items():
        assert step["status"] == "failed", step
        assert (
            fast_run["finished_at"] < step["finished_at"]
        ), f"the fast run, started while {nid} was running, finished first"
    t_error, rx_error = steps["t"]["error"]["message"], steps["rx"]["error"]["message"]
    assert "timed out after 3s" in t_error or "timeout" in t_error, t_error
    assert "longer than 3s" in rx_error, rx_error  # the author's 6 s, capped by the server
    print(f"\nheavy template: {t_error} | regex: {rx_error}")

    # the attack as filed: nested range(10000) loops on a node with timeout_s 1
    nested = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    attack = api.create_flow(
        flow_def(
            [
                node("in", "input"),
                node("n", "template", {"timeout_s": 1}, template=nested),
                node("out", "output"),
            ],
            [edge("in", "n"), edge("n", "out")],
        )
    )
    run = api.wait_run(api.start_run(attack["id"]))
    step = api.steps(run)["n"]
    assert run["status"] == "failed" and step["attempt"] == 1, run
    assert "loop iterations" in step["error"]["message"], step["error"]

    big = api.create_flow(linear_flow(("b", "template", {"template": "{{ ('x'*10**8)|length }}"})))
    run = api.wait_run(api.start_run(big["id"]))
    step = api.steps(run)["b"]
    assert run["status"] == "failed" and step["attempt"] == 1
    assert "over the limit of 1000000" in step["error"]["message"], step["error"]
