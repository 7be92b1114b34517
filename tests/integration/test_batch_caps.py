"""Batch upload caps (issue 9.5): bytes and items per upload (413), live batch items per user (429).

A private API process with tiny caps over the session database (whose session-wide engine may be
running: the items wait in a 10-minute delay, so they stay live whether it dispatches them or not,
and the test cancels what it leaves): an upload past BATCH_MAX_UPLOAD_BYTES or BATCH_MAX_ITEMS is refused with 413
problem+json and creates nothing; uploads that would take a user past BATCH_MAX_LIVE_ITEMS_PER_USER
are refused with 429 (and Retry-After) while another user is unaffected; cancelling frees the room.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

# a template flow finished its items in milliseconds once the session's orchestrator, started by
# an earlier test on the same database, picked the batch up: the cancel below then answered 409
HELLO = linear_flow(("d", "delay", {"seconds": 600}))
CAPS = {
    "BATCH_MAX_UPLOAD_BYTES": "2000",
    "BATCH_MAX_ITEMS": "6",
    "BATCH_MAX_LIVE_ITEMS_PER_USER": "8",
}


def _jsonl(n: int, pad: int = 0) -> bytes:
    return b"".join(
        json.dumps({"name": f"n{i}", "pad": "x" * pad}).encode() + b"\n" for i in range(n)
    )


def _upload(api: Api, flow_id: str, body: bytes) -> Any:
    return api.http.post(
        f"/api/v1/flows/{flow_id}/batches",
        content=body,
        headers={"content-type": "application/x-ndjson"},
    )


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["errors"][0]["path"] == "body"
    return body


def test_upload_and_live_item_caps(
    stack: Stack, database_url: str, db: psycopg.Connection[Any]
) -> None:
    stack.start_api(extra_env=CAPS)
    api = Api(stack.base_url, *make_user(database_url))
    other = Api(stack.base_url, *make_user(database_url))
    flow = api.create_flow(HELLO)
    fid = flow["id"]

    _problem(_upload(api, fid, _jsonl(3, pad=900)), 413)  # ~2.8 kB > 2000 bytes
    _problem(_upload(api, fid, _jsonl(7)), 413)  # 7 items > 6
    listed = api.http.get("/api/v1/batches", params={"flow_id": fid}).json()
    assert listed == []  # nothing was created

    first = _upload(api, fid, _jsonl(5))
    assert first.status_code == 202, first.text
    r = _upload(api, fid, _jsonl(4))  # 5 live + 4 > 8
    body = _problem(r, 429)
    assert r.headers["retry-after"] == "60" and "5 live + 4 new" in body["errors"][0]["reason"]
    assert _upload(api, fid, _jsonl(3)).status_code == 202  # 5 + 3 = 8: allowed
    _problem(_upload(api, fid, _jsonl(1)), 429)  # full: refused before the body is read

    other_flow = other.create_flow(HELLO)
    assert _upload(other, other_flow["id"], _jsonl(5)).status_code == 202  # per user

    assert api.http.post(f"/api/v1/batches/{first.json()['id']}/cancel").status_code == 202
    assert _upload(api, fid, _jsonl(4)).status_code == 202  # room again
    for who in (api, other):  # nothing of this test stays live in the session database
        for batch in who.http.get("/api/v1/batches").json():
            if batch["status"] in ("loading", "running"):
                assert who.http.post(f"/api/v1/batches/{batch['id']}/cancel").status_code == 202
    (n,) = db.execute(
        "SELECT count(*) FROM batches WHERE flow_id = %s", (fid,)
    ).fetchone()  # type: ignore[misc]
    assert n == 3
