"""A big map on the session stack: every item is its own checkpointed step, results come back in
item order, and the per-item cost is printed for the first and the last fifth of the items (a
per-commit cost that grew with the number of items done would show as a slower tail). Figures only:
wall-clock time is never asserted (a shared machine is noisy). 2,000 items by default (CI);
MAP_SCALE_N=10000 measures the README's 10k+ claim (minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.support.client import Api
from tests.support.flows import map_flow

N = int(os.environ.get("MAP_SCALE_N", "2000"))


@pytest.mark.timeout(900)
def test_big_map_keeps_order_and_reports_its_per_item_cost(
    api: Api, db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    flow = api.create_flow(
        map_flow({"type": "template", "params": {"template": "{{ item }}"}}, concurrency=50)
    )
    rid = api.start_run(flow["id"], {"xs": list(range(N))})
    run = api.wait_run(rid, timeout=840)
    assert run["status"] == "succeeded", run["error"]
    assert [o["text"] for o in run["outputs"]] == [str(i) for i in range(N)]
    done = [
        r[0]
        for r in db.execute(
            "SELECT finished_at FROM steps WHERE run_id = %s AND node_id = 'm' AND item_index > 0 "
            "AND status = 'succeeded' ORDER BY finished_at",
            (rid,),
        )
    ]
    assert len(done) == N

    def per_item_ms(first: datetime, last: datetime, n: int) -> float:
        return (last - first).total_seconds() * 1000 / n

    k = min(2000, N // 5)
    head = per_item_ms(done[0], done[k - 1], k)
    tail = per_item_ms(done[-k], done[-1], k)
    total = (done[-1] - done[0]).total_seconds()
    with capsys.disabled():
        print(
            f"\nmap over {N} items: {total:.1f} s, {N / total:.0f} items/s; per item "
            f"first {k} {head:.2f} ms, last {k} {tail:.2f} ms"
        )
