"""Retention: `flowstudio prune` deletes old finished runs in batches, never live or pinned ones.

`test_prune_deletes_old_finished_runs_only` runs real flows on a private stack, ages some of them,
pins one, keeps a live (waiting) run, then runs the CLI: old unpinned runs are gone with their steps,
payloads and events; the pinned, the recent and the live run are untouched and the pinned one still
replays over HTTP; pinning another user's run is 404; a bad age is exit code 2.
`test_prune_at_scale_keeps_locks_short` seeds 100k finished runs (half old) in the engine's own row
layout and prunes them while another connection keeps updating a kept run: it reports the prune's
duration and the longest wait of that concurrent update (printed, not asserted: a shared machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.support.client import Api, linear_flow
from tests.support.dbrows import insert_run
from tests.support.durability import wait_for
from tests.support.infra import ROOT
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack

Conn = psycopg.Connection[Any]


def prune(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "FLOWSTUDIO_ENV_FILE": ""}
    return subprocess.run(
        [sys.executable, "-m", "flowstudio", "prune", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def counts(db: Conn, run_id: str) -> tuple[int, int, int, int]:
    row = db.execute(
        """SELECT (SELECT count(*) FROM runs WHERE id = %(r)s),
                  (SELECT count(*) FROM steps WHERE run_id = %(r)s),
                  (SELECT count(*) FROM step_io io JOIN steps s ON s.id = io.step_id
                    WHERE s.run_id = %(r)s),
                  (SELECT count(*) FROM run_events WHERE run_id = %(r)s)""",
        {"r": run_id},
    ).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)  # type: ignore[return-value]


def test_prune_deletes_old_finished_runs_only(
    stack: Stack, credentials: tuple[str, str], db: Conn, base_env: dict[str, str]
) -> None:
    db_url = base_env["DATABASE_URL"]
    stack.start_api()
    stack.start_orchestrator()
    stack.start_worker()
    api = Api(stack.base_url, *credentials)
    flow = api.create_flow(linear_flow(("t", "template", {"template": "x{{ inputs.i }}"})))
    runs = [api.start_run(flow["id"], {"i": i}) for i in range(4)]
    for rid in runs:
        assert api.wait_run(rid)["status"] == "succeeded"
    live = api.start_run(api.create_flow(linear_flow(("d", "delay", {"seconds": 3600})))["id"])
    wait_for(lambda: api.run(live)["status"] == "waiting", 30, "the live run to wait")
    old, pinned, recent = runs[:2], runs[2], runs[3]
    db.execute(
        "UPDATE runs SET finished_at = now() - interval '40 days' WHERE id = ANY(%s::uuid[])",
        ([*old, pinned],),
    )
    db.execute("UPDATE runs SET created_at = now() - interval '41 days' WHERE id = %s", (live,))
    assert api.http.post(f"/api/v1/runs/{pinned}/pin").json() == {"id": pinned, "pinned": True}
    kept_before = {r: counts(db, r) for r in (pinned, recent, live)}
    assert all(c[0] == 1 and c[1] >= 3 and c[3] > 0 for c in kept_before.values())

    bad = prune(db_url, "--older-than", "thirty days")
    assert bad.returncode == 2 and "--older-than" in bad.stderr
    done = prune(db_url, "--older-than", "30d", "--batch-size", "1")
    assert done.returncode == 0, done.stderr

    for rid in old:
        assert counts(db, rid) == (0, 0, 0, 0)
    assert {r: counts(db, r) for r in (pinned, recent, live)} == kept_before
    replay = api.run(pinned)
    assert replay["status"] == "succeeded" and replay["outputs"] == {"text": "x2"}
    events = api.http.get(f"/api/v1/runs/{pinned}/events", headers={"accept": "text/event-stream"})
    assert (
        events.status_code == 200 and "run.succeeded" in events.text
    ) or "succeeded" in events.text
    assert api.http.post(f"/api/v1/runs/{old[0]}/pin").status_code == 404
    api.http.post(f"/api/v1/runs/{live}/cancel")


def test_pin_of_another_users_run_is_not_found(
    stack: Stack, credentials: tuple[str, str], base_env: dict[str, str]
) -> None:
    from tests.conftest import make_user

    db_url = base_env["DATABASE_URL"]
    stack.start_api()
    stack.start_orchestrator()
    stack.start_worker()
    owner = Api(stack.base_url, *credentials)
    rid = owner.start_run(
        owner.create_flow(linear_flow(("t", "template", {"template": "a"})))["id"]
    )
    other = Api(stack.base_url, *make_user(db_url))
    assert other.http.post(f"/api/v1/runs/{rid}/pin").status_code == 404
    assert other.http.post(f"/api/v1/runs/{rid}/unpin").status_code == 404


SEED = """
INSERT INTO runs (id, flow_id, flow_version, owner_id, status, created_at, started_at, finished_at)
SELECT gen_random_uuid(), %(flow)s, 1, %(owner)s, 'succeeded', t, t, t
FROM (SELECT now() - make_interval(days => CASE WHEN g %% 2 = 0 THEN 60 ELSE 1 END,
                                   secs => g) AS t
      FROM generate_series(1, %(n)s) g) s;
INSERT INTO steps (run_id, node_id, node_type, status, attempt, finished_at)
SELECT id, 't', 'template', 'succeeded', 1, finished_at FROM runs WHERE flow_id = %(flow)s;
INSERT INTO step_io (step_id, input, output)
SELECT s.id, '{}', '{"text": "seeded output of some length"}' FROM steps s
JOIN runs r ON r.id = s.run_id WHERE r.flow_id = %(flow)s;
INSERT INTO run_events (run_id, seq, kind, to_status)
SELECT id, k, 'step', 'succeeded' FROM runs, generate_series(1, 3) k WHERE flow_id = %(flow)s;
"""


@pytest.mark.timeout(900)
def test_prune_at_scale_keeps_locks_short(db: Conn, base_env: dict[str, str]) -> None:
    db_url = base_env["DATABASE_URL"]
    n = 100_000
    kept_run, _ = insert_run(db, ["a"])
    flow, owner = db.execute(
        "SELECT flow_id, owner_id FROM runs WHERE id = %s", (kept_run,)
    ).fetchone()
    t0 = time.monotonic()
    for statement in SEED.split(";"):
        if statement.strip():
            db.execute(statement, {"flow": flow, "owner": owner, "n": n})
    seeded_s = time.monotonic() - t0
    old = db.execute(
        "SELECT count(*) FROM runs WHERE flow_id = %s AND finished_at < now() - interval '30 days'",
        (flow,),
    ).fetchone()[0]
    assert old == n // 2

    waits: list[float] = []
    stop = threading.Event()

    def touch_kept_run() -> None:  # a live run's checkpoints keep landing while prune runs
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.is_set():
                t = time.monotonic()
                conn.execute("UPDATE runs SET updated_at = now() WHERE id = %s", (kept_run,))
                waits.append(time.monotonic() - t)
                time.sleep(0.01)

    toucher = threading.Thread(target=touch_kept_run)
    toucher.start()
    t1 = time.monotonic()
    try:
        done = prune(db_url, "--older-than", "30d")
    finally:
        stop.set()
        toucher.join(30)
    prune_s = time.monotonic() - t1
    assert done.returncode == 0, done.stderr
    left = db.execute("SELECT count(*) FROM runs WHERE flow_id = %s", (flow,)).fetchone()[0]
    assert left == n // 2 + 1  # the recent half and the kept (live, never finished) run
    orphans = db.execute(
        "SELECT count(*) FROM run_events e WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = e.run_id)"
    ).fetchone()[0]
    assert orphans == 0 and waits
    sys.stdout.write(
        f"prune at scale: seeded {n} runs in {seeded_s:.1f}s; pruned {old} in {prune_s:.1f}s "
        f"({old / prune_s:.0f} runs/s); concurrent update of a kept run: "
        f"p50 {sorted(waits)[len(waits) // 2] * 1000:.1f} ms, max {max(waits) * 1000:.1f} ms "
        f"over {len(waits)} updates\n"
    )
