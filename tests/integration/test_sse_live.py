"""The live SSE event stream (`GET /api/v1/runs/{id}/events`) while a run is still going.

A run parks on a `wait_for_signal` node, so the test decides when it moves on. Checked: events arrive
before the run finishes (a server that buffered to the end would time the reader out), a keepalive
comment comes while nothing happens, a stream resumed with `Last-Event-ID` in the middle of the live
run continues with no gap and no duplicate across the hand-over from replay to live (both from an
older event and from the very last one), `?after=` replays from a sequence number, a bad header is a
422 naming it, and another user's stream is a 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg

from tests.conftest import make_user
from tests.integration.test_run_control import signal_flow, sse_events
from tests.support.checks import assert_event_log_consistent
from tests.support.client import Api
from tests.support.stack import Stack

READ_TIMEOUT = 25.0  # > the server's 10 s keepalive: a silent server fails the read


def sse_stream(api: Api, rid: str, headers: dict[str, str] | None = None) -> Iterator[Any]:
    """Yield "open" once the response has started, then parsed SSE events (dicts) and keepalive
    comments ("keepalive") as they arrive."""
    with api.http.stream(
        "GET",
        f"/api/v1/runs/{rid}/events",
        headers=headers or {},
        timeout=httpx.Timeout(30, read=READ_TIMEOUT),
    ) as resp:
        assert resp.status_code == 200, resp.read()
        yield "open"
        fields: dict[str, str] = {}
        for line in resp.iter_lines():
            if line.startswith(":"):
                yield line[1:].strip()
            elif line == "":
                if fields:
                    yield fields
                fields = {}
            else:
                k, _, v = line.partition(":")
                fields[k] = v.strip()


def db_seqs(db: psycopg.Connection[Any], rid: str) -> list[int]:
    rows = db.execute("SELECT seq FROM run_events WHERE run_id = %s ORDER BY seq", (rid,))
    return [r[0] for r in rows]


def signal(api: Api, rid: str) -> None:
    r = api.http.post(
        f"/api/v1/runs/{rid}/signal", json={"node_id": "approve", "payload": {"by": "sse"}}
    )
    assert r.status_code == 202, r.text


def is_waiting(e: Any) -> bool:
    return (
        isinstance(e, dict)
        and e.get("event") == "step"
        and json.loads(e["data"]).get("to_status") == "waiting"
    )


def test_events_arrive_live_before_the_run_ends_with_keepalives(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    rid = api.start_run(api.create_flow(signal_flow())["id"])
    got: list[dict[str, str]] = []
    keepalive_while_waiting = False
    stream = sse_stream(api, rid)
    for item in stream:
        if item == "open":
            continue
        if item == "keepalive":
            keepalive_while_waiting = api.run(rid)["status"] == "waiting"
            break
        got.append(item)
        if is_waiting(item):
            # Delivered while the run is parked: nothing was buffered until the end.
            assert api.run(rid)["status"] == "waiting"
    assert any(is_waiting(e) for e in got), got
    assert keepalive_while_waiting, "no keepalive comment while the run was waiting"
    signal(api, rid)
    for item in stream:
        if item != "keepalive":
            got.append(item)
    assert got[-1]["event"] == "end" and json.loads(got[-1]["data"]) == {"status": "succeeded"}
    seqs = [int(e["id"]) for e in got if "id" in e and e.get("event") != "end"]
    assert seqs == db_seqs(db, rid) == list(range(1, len(seqs) + 1))
    assert_event_log_consistent(db, rid)


def resume_mid_run(api: Api, db: psycopg.Connection[Any], back: int) -> None:
    """Read a live stream up to the waiting node, drop it, resume `back` events earlier with
    Last-Event-ID while the run still waits, let the run go on, and read the rest."""
    rid = api.start_run(api.create_flow(signal_flow())["id"])
    first: list[int] = []
    for item in sse_stream(api, rid):
        if isinstance(item, dict):
            first.append(int(item["id"]))
            if is_waiting(item):
                break  # the connection drops here, mid-run
    assert api.run(rid)["status"] == "waiting"
    last_id = first[-1 - back]
    resumed: list[int] = []
    stream = sse_stream(api, rid, {"Last-Event-ID": str(last_id)})
    assert next(stream) == "open"
    replayed_to = first[-1]
    if back == 0:
        signal(api, rid)  # nothing to replay: every event of the resumed stream is live
    for item in stream:
        if not isinstance(item, dict) or "id" not in item or item.get("event") == "end":
            continue
        resumed.append(int(item["id"]))
        if back and resumed[-1] == replayed_to:
            signal(api, rid)  # the replay is done; what follows arrives live
    assert api.run(rid)["status"] == "succeeded"
    all_seqs = db_seqs(db, rid)
    assert resumed == [s for s in all_seqs if s > last_id], (last_id, resumed, all_seqs)
    assert len(all_seqs) > first[-1], "nothing happened after the resume"


def test_last_event_id_resume_from_the_latest_event_mid_run_has_no_gap_or_duplicate(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    resume_mid_run(api, db, back=0)


def test_last_event_id_resume_from_an_older_event_mid_run_replays_then_follows_live(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    resume_mid_run(api, db, back=2)


def test_after_query_bad_header_and_another_users_stream(
    api: Api, db: psycopg.Connection[Any], running_stack: Stack, database_url: str
) -> None:
    rid = api.start_run(api.create_flow(signal_flow())["id"])
    api.wait_run(rid, statuses=("waiting",))
    signal(api, rid)
    api.wait_run(rid)
    seqs = db_seqs(db, rid)
    r = api.http.get(f"/api/v1/runs/{rid}/events", params={"after": seqs[2]})
    assert r.status_code == 200
    assert [int(e["id"]) for e in sse_events(r.text) if e.get("event") != "end"] == seqs[3:]
    # Last-Event-ID wins over ?after= (a browser reconnecting keeps the original URL)
    r = api.http.get(
        f"/api/v1/runs/{rid}/events",
        params={"after": 1},
        headers={"Last-Event-ID": str(seqs[-2])},
    )
    assert [int(e["id"]) for e in sse_events(r.text) if e.get("event") != "end"] == seqs[-1:]
    bad = api.http.get(f"/api/v1/runs/{rid}/events", headers={"Last-Event-ID": "seven"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "header.Last-Event-ID"
    other = Api(running_stack.base_url, *make_user(database_url))
    assert other.http.get(f"/api/v1/runs/{rid}/events").status_code == 404
