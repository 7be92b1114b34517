"""`GET /api/v1/runs` filters over real HTTP: time window, batch, and keyset pages that keep them.

`created_after` is inclusive and `created_before` exclusive (ISO 8601, no offset = UTC); `batch_id`
lists one batch's runs; paging with `cursor` keeps every filter; bad values answer 422 with the query
parameter's path; other users' runs never show up, whatever the filter.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack


@pytest.fixture
def owner(running_stack: Stack, database_url: str) -> Api:
    return Api(running_stack.base_url, *make_user(database_url))


def all_pages(api: Api, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = api.http.get("/api/v1/runs", params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_batch_filter_pages_through_exactly_that_batchs_runs(owner: Api) -> None:
    flow = owner.create_flow(linear_flow(("t", "template", {"template": "{{ inputs.i }}"})))
    loose = owner.start_run(flow["id"])
    r = owner.http.post(
        f"/api/v1/flows/{flow['id']}/batches",
        json=[{"i": i} for i in range(7)],
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 202, r.text
    batch_id = r.json()["id"]
    items = all_pages(owner, batch_id=batch_id, limit=3)
    assert len(items) == 7 and len({i["id"] for i in items}) == 7
    assert {i["batch_id"] for i in items} == {batch_id} and loose not in {i["id"] for i in items}
    keys = [(i["created_at"], i["id"]) for i in items]
    assert keys == sorted(keys, reverse=True), "newest first, keyset order kept across pages"
    both = all_pages(owner, batch_id=batch_id, flow_id=flow["id"], limit=2)
    assert {i["id"] for i in both} == {i["id"] for i in items}
    assert all_pages(owner, batch_id=str(uuid.uuid4())) == []


def test_time_window_is_inclusive_after_and_exclusive_before(owner: Api) -> None:
    flow = owner.create_flow(linear_flow())
    ids = []
    for _ in range(4):
        ids.append(owner.start_run(flow["id"]))
        time.sleep(0.05)
    runs = {i: owner.run(i) for i in ids}
    created = [datetime.fromisoformat(runs[i]["created_at"]) for i in ids]
    window = all_pages(
        owner,
        flow_id=flow["id"],
        created_after=created[1].isoformat(),
        created_before=created[3].isoformat(),
        limit=1,
    )
    assert [i["id"] for i in window] == [ids[2], ids[1]]
    after = all_pages(owner, flow_id=flow["id"], created_after=created[2].isoformat())
    assert [i["id"] for i in after] == [ids[3], ids[2]]
    # "Z" and naive timestamps are UTC
    utc = created[0].astimezone(timezone.utc).replace(tzinfo=None)
    zulu = utc.isoformat() + "Z"
    assert [i["id"] for i in all_pages(owner, flow_id=flow["id"], created_before=zulu)] == []
    naive = (utc + timedelta(microseconds=1)).isoformat()
    assert [i["id"] for i in all_pages(owner, flow_id=flow["id"], created_before=naive)] == [ids[0]]
    future = (created[3] + timedelta(days=1)).isoformat()
    assert all_pages(owner, flow_id=flow["id"], created_after=future) == []


def test_bad_filter_values_are_422_with_the_query_path(owner: Api) -> None:
    cases = [
        ({"created_after": "yesterday"}, "query.created_after"),
        ({"created_before": "2025-13-01T00:00:00Z"}, "query.created_before"),
        ({"created_after": ""}, "query.created_after"),
        ({"batch_id": "not-a-uuid"}, "query.batch_id"),
        (
            {"created_after": "2025-02-01T00:00:00Z", "created_before": "2025-01-01T00:00:00Z"},
            "query.created_before",
        ),
    ]
    for params, path in cases:
        r = owner.http.get("/api/v1/runs", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert path in [e["path"] for e in r.json()["errors"]], r.json()


def test_filters_never_show_other_users_runs(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    other = Api(running_stack.base_url, *make_user(database_url))
    flow = owner.create_flow(linear_flow())
    r = owner.http.post(
        f"/api/v1/flows/{flow['id']}/batches",
        json=[{"i": 1}, {"i": 2}],
        headers={"content-type": "application/json"},
    )
    batch_id = r.json()["id"]
    owner.start_run(flow["id"])
    assert all_pages(other, batch_id=batch_id) == []
    assert all_pages(other, flow_id=flow["id"], created_after="2000-01-01T00:00:00Z") == []
    assert len(all_pages(owner, batch_id=batch_id)) == 2
