"""Batches over real HTTP and real processes: upload (JSON list, JSONL, CSV, multipart), the dispatcher's
concurrency limit, results in input order, 422 paths, ownership, cancel, the first items started
while the rest load, crash while loading, and a 100k-item streamed upload (JSONL and CSV) in API memory well under the upload's size.

Most tests use the session stack (`api`: API + orchestrator + two workers); the memory and crash tests
start their own API (`stack`) so they can read its RSS or kill it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from flowstudio.engine.batches import LOAD_CHUNK, LOAD_FIRST_CHUNK
from flowstudio.store.statuses import RUN_LIVE
from tests.conftest import make_user
from tests.support.checks import assert_event_log_consistent
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

TERMINAL = ("succeeded", "failed", "cancelled")
HELLO = linear_flow(("t", "template", {"template": "hi {{ inputs.name }}"}))
# items that stay live once started: the session's dispatcher may start a batch uploaded to a
# test's own API, and template items end in milliseconds, so it would start ever more of them
PARKED = linear_flow(("d", "delay", {"seconds": 600}))


def upload(api: Api, flow_id: str, body: Any, content_type: str, **kw: Any) -> httpx.Response:
    return api.http.post(
        f"/api/v1/flows/{flow_id}/batches",
        content=body,
        headers={"content-type": content_type},
        timeout=kw.pop("timeout", 60),
        **kw,
    )


def batch(api: Api, batch_id: str) -> dict[str, Any]:
    r = api.http.get(f"/api/v1/batches/{batch_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_batch(
    api: Api, batch_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (b := batch(api, batch_id))["status"] not in statuses:
        assert time.monotonic() < deadline, f"batch still {b['status']}: {b['counts']}"
        time.sleep(0.2)
    return b


def results(api: Api, batch_id: str) -> list[dict[str, Any]]:
    r = api.http.get(f"/api/v1/batches/{batch_id}/results")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


def event_shape(db: psycopg.Connection[Any], run_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        """SELECT kind, node_id, from_status, to_status FROM run_events WHERE run_id = %s
           ORDER BY seq""",
        (run_id,),
    ).fetchall()


def assert_hello_results(rows: list[dict[str, Any]], names: list[str]) -> None:
    assert [r["index"] for r in rows] == list(range(len(names)))
    assert [r["status"] for r in rows] == ["succeeded"] * len(names)
    assert [r["outputs"] for r in rows] == [{"text": f"hi {n}"} for n in names]
    assert all(r["error"] is None and r["run_id"] for r in rows)


def test_json_list_batch_runs_every_item_and_results_keep_input_order(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    flow = api.create_flow(HELLO)
    names = [f"n{i:03d}" for i in range(120)]
    r = upload(api, flow["id"], json.dumps([{"name": n} for n in names]), "application/json")
    assert r.status_code == 202, r.text
    assert r.json()["total"] == 120
    done = wait_batch(api, r.json()["id"])
    assert done["status"] == "succeeded" and done["total"] == 120 and done["progress"] == 1.0
    assert done["counts"] == {
        "queued": 0,
        "running": 0,
        "waiting": 0,
        "succeeded": 120,
        "failed": 0,
        "cancelled": 0,
    }
    assert done["loaded_at"] and done["finished_at"]
    rows = results(api, done["id"])
    assert_hello_results(rows, names)
    # bulk insert + dispatch leave exactly the rows start_run + the same execution would
    single = api.wait_run(api.start_run(flow["id"], {"name": "x"}))
    for row in rows[:3]:
        assert_event_log_consistent(db, row["run_id"])
        assert event_shape(db, row["run_id"]) == event_shape(db, single["id"])
    steps = db.execute(
        """SELECT node_id, node_type, item_index, attempt, max_attempts, status FROM steps
           WHERE run_id = %s ORDER BY node_id""",
        (rows[0]["run_id"],),
    ).fetchall()
    assert (
        steps
        == db.execute(
            """SELECT node_id, node_type, item_index, attempt, max_attempts, status FROM steps
           WHERE run_id = %s ORDER BY node_id""",
            (single["id"],),
        ).fetchall()
    )


def test_jsonl_csv_and_multipart_uploads_run_to_completion(api: Api) -> None:
    flow = api.create_flow(HELLO)
    names = [f"m{i}" for i in range(25)]
    jsonl = "".join(json.dumps({"name": n}) + "\n" for n in names)
    csv_body = "name,extra\r\n" + "".join(f'{n},"a, ""quoted""\nvalue"\r\n' for n in names)
    uploads = [
        upload(api, flow["id"], jsonl, "application/x-ndjson"),
        upload(api, flow["id"], jsonl, "application/jsonl"),
        upload(api, flow["id"], csv_body, "text/csv"),
        api.http.post(
            f"/api/v1/flows/{flow['id']}/batches",
            files={"file": ("items.csv", csv_body.encode(), "text/csv")},
            data={"note": "ignored"},
        ),
    ]
    for r in uploads:
        assert r.status_code == 202, r.text
        assert r.json()["total"] == 25
    for r in uploads:
        assert wait_batch(api, r.json()["id"])["status"] == "succeeded"
        assert_hello_results(results(api, r.json()["id"]), names)
    csv_run = api.run(results(api, uploads[2].json()["id"])[0]["run_id"])
    assert csv_run["inputs"] == {"name": "m0", "extra": 'a, "quoted"\nvalue'}


@pytest.mark.parametrize(
    "body, content_type, paths",
    [
        ('{"name": "a"}\n{"name": \n\n[1, 2]\n{"name": "b"}\n', "application/x-ndjson", [2, 4]),
        ("name,x\na,1\nb\nc,3\nd,4,5\n", "text/csv", [3, 5]),
    ],
)
def test_bad_lines_answer_422_with_their_line_and_create_nothing(
    api: Api, body: str, content_type: str, paths: list[int]
) -> None:
    flow = api.create_flow(HELLO)
    r = upload(api, flow["id"], body, content_type)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["path"] for e in r.json()["errors"]] == [f"body[line {n}]" for n in paths]
    assert all(e["reason"] for e in r.json()["errors"])
    listed = api.http.get("/api/v1/batches", params={"flow_id": flow["id"]})
    assert listed.status_code == 200 and listed.json() == []


def test_malformed_uploads_are_4xx_problems_never_500(api: Api) -> None:
    flow = api.create_flow(HELLO)
    cases = [
        ('[{"name": "a"}, 3, {"name": ]', "application/json", 422, ["body[1]", "body[2]"]),
        ('{"name": "a"}', "application/json", 422, ["body"]),
        ('[{"name": "a"}', "application/json", 422, ["body"]),
        ("", "application/x-ndjson", 422, ["body"]),
        ("a,a\n1,2\n", "text/csv", 422, ["body[line 1]"]),
        ("x", "text/plain", 415, ["header.Content-Type"]),
    ]
    for body, ctype, status, paths in cases:
        r = upload(api, flow["id"], body, ctype)
        assert r.status_code == status, (body, r.text)
        assert [e["path"] for e in r.json()["errors"]] == paths, body
    r = api.http.post(f"/api/v1/flows/{flow['id']}/batches", files={"other": ("x", b"{}")})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.file"
    assert api.http.get("/api/v1/batches", params={"flow_id": flow["id"]}).json() == []


def test_another_users_batch_is_404(api: Api, running_stack: Stack, database_url: str) -> None:
    other = Api(running_stack.base_url, *make_user(database_url))
    flow = api.create_flow(HELLO)
    r = upload(api, flow["id"], '{"name": "a"}\n', "application/x-ndjson")
    bid = r.json()["id"]
    for path in (f"/api/v1/batches/{bid}", f"/api/v1/batches/{bid}/results"):
        assert other.http.get(path).status_code == 404
    assert other.http.post(f"/api/v1/batches/{bid}/cancel").status_code == 404
    assert other.http.get("/api/v1/batches").json() == []
    r = upload(other, flow["id"], '{"name": "a"}\n', "application/x-ndjson")
    assert r.status_code == 404
    assert api.http.get(f"/api/v1/batches/{bid}").status_code == 200


def test_dispatcher_keeps_at_most_batch_concurrency_runs_live(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    """The session orchestrator runs with the default BATCH_CONCURRENCY of 256."""
    flow = api.create_flow(linear_flow(("d", "delay", {"seconds": 0.6})))
    r = upload(api, flow["id"], "".join(f'{{"i": {i}}}\n' for i in range(600)), "application/jsonl")
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    peak = 0
    deadline = time.monotonic() + 90
    while batch(api, bid)["status"] == "running":
        (live,) = db.execute(
            """SELECT count(*) FROM runs WHERE batch_id = %s AND status IN
               ('queued', 'running', 'waiting') AND NOT (status = 'queued' AND event_seq = 1)""",
            (bid,),
        ).fetchone()
        assert live <= 256
        peak = max(peak, live)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = batch(api, bid)
    assert done["status"] == "succeeded" and done["counts"]["succeeded"] == 600
    assert peak >= 128, f"runs were not run in parallel (peak {peak} live)"


def test_cancel_stops_started_and_unstarted_runs(api: Api, db: psycopg.Connection[Any]) -> None:
    flow = api.create_flow(linear_flow(("d", "delay", {"seconds": 60})))
    r = upload(api, flow["id"], "".join(f'{{"i": {i}}}\n' for i in range(300)), "application/jsonl")
    bid = r.json()["id"]
    deadline = time.monotonic() + 30
    while batch(api, bid)["counts"]["waiting"] < 20:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = api.http.post(f"/api/v1/batches/{bid}/cancel")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["counts"]["cancelled"] == 300
    assert body["progress"] == 1.0 and body["error"]["message"].startswith("batch cancelled by")
    assert api.http.post(f"/api/v1/batches/{bid}/cancel").status_code == 409
    rows = results(api, bid)
    assert [x["status"] for x in rows] == ["cancelled"] * 300
    started = db.execute(
        "SELECT id FROM runs WHERE batch_id = %s AND started_at IS NOT NULL LIMIT 1", (bid,)
    ).fetchone()
    unstarted = db.execute(
        "SELECT id FROM runs WHERE batch_id = %s AND started_at IS NULL ORDER BY batch_index DESC "
        "LIMIT 1",
        (bid,),
    ).fetchone()
    assert started and unstarted
    for (run_id,) in (started, unstarted):
        assert_event_log_consistent(db, str(run_id))
    # Nothing can start after the cancel: every run is already terminal (asserted above, from the
    # cancel's own answer and the results), and the database refuses the move out of `cancelled`
    # whoever tries it (the dispatcher included).
    for (run_id,) in (started, unstarted):
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute("UPDATE runs SET status = 'running' WHERE id = %s", (run_id,))
    assert batch(api, bid)["counts"]["cancelled"] == 300


def test_cancel_while_loading_stops_the_load_and_cancels_what_was_loaded(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    flow = api.create_flow(linear_flow(("d", "delay", {"seconds": 60})))
    body = "".join(f'{{"i": {i}}}\n' for i in range(40_000))
    answer: list[httpx.Response] = []
    uploader = threading.Thread(
        target=lambda: answer.append(upload(api, flow["id"], body, "application/x-ndjson"))
    )
    uploader.start()
    deadline = time.monotonic() + 30
    while not (
        row := db.execute("SELECT id FROM batches WHERE flow_id = %s", (flow["id"],)).fetchone()
    ):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    bid = str(row[0])
    while not db.execute("SELECT 1 FROM runs WHERE batch_id = %s LIMIT 1", (bid,)).fetchone():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = api.http.post(f"/api/v1/batches/{bid}/cancel", timeout=60)
    uploader.join(60)
    assert r.status_code == 202, r.text
    assert answer and answer[0].status_code == 409, answer[0].text if answer else "no answer"
    b = batch(api, bid)
    loaded = sum(b["counts"].values())
    assert b["status"] == "cancelled" and b["total"] == 40_000
    assert 0 < loaded < 40_000 and b["counts"]["cancelled"] == loaded


def test_a_batch_starts_its_first_items_while_the_rest_load(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    """The first chunk's runs are dispatched as it commits, not once the whole upload is in (a
    100k batch waited for all of its load). Read from the database's own times: a run of the
    batch started before the batch was loaded."""
    flow = api.create_flow(PARKED)
    n = LOAD_FIRST_CHUNK + 20 * LOAD_CHUNK  # ~1-2 s of loading after the first chunk
    r = upload(api, flow["id"], "".join(f'{{"i": {i}}}\n' for i in range(n)), "application/jsonl")
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    first_start, loaded_at = db.execute(
        "SELECT (SELECT min(started_at) FROM runs WHERE batch_id = b.id), b.loaded_at "
        "FROM batches b WHERE b.id = %s",
        (bid,),
    ).fetchone()
    assert first_start is not None and loaded_at is not None
    assert first_start < loaded_at, (first_start, loaded_at)
    assert api.http.post(f"/api/v1/batches/{bid}/cancel").status_code == 202


def test_upload_cut_off_midway_creates_nothing(api: Api, running_stack: Stack) -> None:
    flow = api.create_flow(HELLO)
    host, port = running_stack.base_url.removeprefix("http://").split(":")
    body = b"".join(b'{"name": "x%d"}\n' % i for i in range(2000))
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            f"POST /api/v1/flows/{flow['id']}/batches HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {api.token}\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body) * 2}\r\n\r\n".encode() + body
        )
        time.sleep(0.5)
    time.sleep(0.5)
    assert api.http.get("/api/v1/batches", params={"flow_id": flow["id"]}).json() == []


def test_api_killed_while_loading_leaves_a_failed_batch_and_no_live_runs(
    stack: Stack, user_credentials: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    stack.start_api(extra_env={"FLOWSTUDIO_CRASHPOINTS": "api.batch_chunk_loaded:3"})
    stack.start_orchestrator()
    api = Api(stack.base_url, *user_credentials)
    flow = api.create_flow(HELLO)
    body = "".join(f'{{"name": "k{i}"}}\n' for i in range(5500))
    with pytest.raises(httpx.HTTPError):
        upload(api, flow["id"], body, "application/x-ndjson")
    (bid,) = db.execute("SELECT id FROM batches WHERE flow_id = %s", (flow["id"],)).fetchone()
    deadline = time.monotonic() + 30
    while True:
        status, error = db.execute(
            "SELECT status, error FROM batches WHERE id = %s", (bid,)
        ).fetchone()
        live = db.execute(  # (a run started while the batch loaded may have ended already)
            "SELECT count(*) FROM runs WHERE batch_id = %s AND status = ANY(%s)",
            (bid, list(RUN_LIVE)),
        ).fetchone()[0]
        if status == "failed" and live == 0:
            break
        assert time.monotonic() < deadline, (status, live)
        time.sleep(0.2)
    loaded = LOAD_FIRST_CHUNK + 2 * LOAD_CHUNK  # three chunks
    assert f"loading interrupted after {loaded} items" in error["message"]
    # the orchestrators started the first chunks' runs while the rest loaded; those still live
    # (the session's workers may have ended some) were cancelled with the unstarted ones
    started = db.execute(
        "SELECT count(*) FROM runs WHERE batch_id = %s AND started_at IS NOT NULL", (bid,)
    ).fetchone()[0]
    assert started > 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_100k_item_upload_streams_in_memory_well_under_its_size(
    fmt: str,
    stack: Stack,
    user_credentials: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """~36 MB of JSONL or CSV (100k items of ~360 bytes): an API that held the raw body (let alone
    the parsed items, several times larger as Python objects) would grow by more than the upload;
    a streamed one grows by its chunk buffers only. The bound is half the upload's size. The
    session's orchestrator (same database) may start up to BATCH_CONCURRENCY (256) of the items,
    which then wait (PARKED): they cannot end and make room for more while the test looks."""
    proc = stack.start_api()
    assert proc.popen is not None
    api = Api(stack.base_url, *user_credentials)
    flow = api.create_flow(PARKED)
    api.http.get(f"/api/v1/flows/{flow['id']}")  # warm the code paths before measuring
    n, per_chunk = 100_000, 1000
    filler = "x" * 340

    def line(i: int) -> str:
        return f'{{"name": "u{i}", "pad": "{filler}"}}\n' if fmt == "jsonl" else f"u{i},{filler}\n"

    def body() -> Iterator[bytes]:
        if fmt == "csv":
            yield b"name,pad\n"
        for start in range(0, n, per_chunk):
            yield "".join(line(i) for i in range(start, start + per_chunk)).encode()

    upload_mb = sum(len(c) for c in body()) / 1024 / 1024
    before = rss_kib(proc.popen.pid)
    peak, stop = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kib(proc.popen.pid))  # type: ignore[union-attr]
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ctype = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    t0 = time.monotonic()
    r = upload(api, flow["id"], body(), ctype, timeout=180)
    load_s = time.monotonic() - t0
    stop.set()
    sampler.join()
    assert r.status_code == 202, r.text
    assert r.json()["total"] == n
    b = batch(api, r.json()["id"])
    assert b["total"] == n and sum(b["counts"].values()) == n
    assert b["counts"]["queued"] >= n - 300  # another orchestrator may have started a few
    growth_mb = (peak - before) / 1024
    with capsys.disabled():
        print(
            f"\n100k {fmt} batch ({upload_mb:.0f} MB): upload+load {load_s:.1f}s, "
            f"API RSS {before / 1024:.0f} MB -> peak {peak / 1024:.0f} MB (+{growth_mb:.0f} MB)"
        )
    assert growth_mb < upload_mb / 2, f"API RSS grew {growth_mb:.0f} MB for {upload_mb:.0f} MB"
    r = api.http.post(f"/api/v1/batches/{b['id']}/cancel", timeout=180)
    assert r.status_code == 202, r.text
    counts = r.json()["counts"]
    assert counts["queued"] + counts["running"] + counts["waiting"] == 0
    assert counts["cancelled"] >= n - 300
