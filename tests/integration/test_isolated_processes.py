"""Tests that start and kill their own processes, isolated from the session's shared stack: each
module run gets its own database and each test its own queue (`support/private_stack.py`), so no
other orchestrator or worker can touch these runs. Covered: several orchestrators fire each timer and
each cron tick once (missed ticks after downtime, and a live minute tick crossed by three
orchestrators, counted as runs started, not as `schedule_fires` rows whose key forbids duplicates); SIGTERM hands a worker's in-flight step back at once; a worker SIGKILLed
mid-map (item 37 of 100) or mid-tool-call re-runs only the work in flight."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tests.integration.test_agent import agent_flow
from tests.integration.test_schedules import runs_of, wait_fires
from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.client import Api, linear_flow
from tests.support.durability import wait_for
from tests.support.fake_openai import FakeOpenAI
from tests.support.flows import map_flow
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.sink import Sink
from tests.support.stack import Stack


def test_three_orchestrators_fire_each_timer_once(
    stack: Stack, credentials: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    stack.start_api()
    for _ in range(3):
        stack.start_orchestrator()
    stack.start_worker(concurrency=8)
    api = Api(stack.base_url, *credentials)
    flow = api.create_flow(
        linear_flow(
            ("d", "delay", {"seconds": "{{ inputs.s }}"}),
            ("f", "fail", {"succeed_on_attempt": 2}),
            retry={"f": {"retry": {"max_attempts": 3, "initial_interval": 0.2}}},
        )
    )
    rids = [api.start_run(flow["id"], {"s": 0.2 + (i % 5) * 0.15}) for i in range(15)]
    for rid in rids:
        run = api.wait_run(rid, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        assert_event_log_consistent(db, rid)
        assert_no_double_success(db, rid)
        fired = db.execute(
            """SELECT count(*) FILTER (WHERE from_status = 'waiting'),
                      count(*) FILTER (WHERE from_status = 'retrying')
               FROM run_events WHERE run_id = %s AND kind = 'step'""",
            (rid,),
        ).fetchone()
        assert fired == (1, 1), f"run {rid}: timers fired {fired}"


def test_sigterm_releases_the_in_flight_step_at_once(
    stack: Stack, credentials: tuple[str, str], sink: Sink, db: psycopg.Connection[Any]
) -> None:
    env = {
        "LEASE_SECONDS": "120",
        "HEARTBEAT_SECONDS": "1",
    }  # only a release can explain a quick retry
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=2, extra_env={**env, "WORKER_GRACE_SECONDS": "0.5"})
    api = Api(stack.base_url, *credentials)
    flow = api.create_flow(
        linear_flow(("call", "http_request", {"url": sink.url("/slow", sleep=3)}))
    )
    rid = api.start_run(flow["id"])
    deadline = time.monotonic() + 20
    while sink.calls[f"{rid}:call:0"] == 0:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert worker.terminate(timeout=20) == 0, "worker did not exit cleanly on SIGTERM"
    released = db.execute(
        "SELECT count(*) FROM run_events WHERE run_id = %s AND from_status = 'running' "
        "AND to_status = 'ready'",
        (rid,),
    ).fetchone()
    assert released == (1,)
    stack.start_worker(concurrency=2, extra_env=env)
    run = api.wait_run(rid, timeout=30)
    assert run["status"] == "succeeded" and api.steps(run)["call"]["attempt"] == 2
    assert sink.calls[f"{rid}:call:0"] == 2
    assert_event_log_consistent(db, rid)


def test_worker_killed_mid_tool_call_reruns_only_the_tool(
    stack: Stack,
    credentials: tuple[str, str],
    fake: FakeOpenAI,
    sink: Sink,
    db: psycopg.Connection[Any],
) -> None:
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=4)
    api = Api(stack.base_url, *credentials)
    tool = {"type": "http_request", "params": {"url": sink.url("/tool", sleep=2)}}
    rid = api.start_run(api.create_flow(agent_flow(fake, tool))["id"], {"q": "z"})
    key = f"{rid}:a:1"
    deadline = time.monotonic() + 30
    while sink.calls[key] == 0:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.05)
    worker.kill()
    stack.start_worker(concurrency=4)
    run = api.wait_run(rid, timeout=60)
    assert run["status"] == "succeeded", run["error"]
    tool_step = next(s for s in run["steps"] if s["item_index"] == 1)
    assert tool_step["attempt"] == 2 and sink.calls[key] == 2
    assert fake.calls[f"{rid}:a:0:1"] == 1, "the committed first turn was not asked again"
    assert_event_log_consistent(db, rid)
    assert_no_double_success(db, rid)


def test_worker_killed_mid_map_reruns_only_items_in_flight(
    stack: Stack, credentials: tuple[str, str], sink: Sink, db: psycopg.Connection[Any]
) -> None:
    stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(concurrency=4)
    api = Api(stack.base_url, *credentials)
    body = {"type": "http_request", "params": {"url": sink.url("/item", sleep=0.05)}}
    rid = api.start_run(
        api.create_flow(map_flow(body, concurrency=4))["id"], {"xs": list(range(100))}
    )
    deadline = time.monotonic() + 60
    while sink.calls[f"{rid}:m:37"] == 0:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.01)
    worker.kill()
    done_before = {
        r[0]
        for r in db.execute(
            "SELECT item_index FROM steps WHERE run_id = %s AND node_id = 'm' AND item_index > 0 "
            "AND status = 'succeeded'",
            (rid,),
        ).fetchall()
    }
    assert len(done_before) >= 30
    stack.start_worker(concurrency=4)
    run = api.wait_run(rid, timeout=90)
    assert run["status"] == "succeeded", run["error"]
    assert len(run["outputs"]) == 100
    for i in range(1, 101):
        calls = sink.calls[f"{rid}:m:{i}"]
        if i in done_before:
            assert calls == 1, f"completed item {i} ran again"
        else:
            assert 1 <= calls <= 2, f"item {i} called {calls} times"
    assert_event_log_consistent(db, rid)
    assert_no_double_success(db, rid)


def test_missed_ticks_fire_once_each_with_three_orchestrators(
    stack: Stack, credentials: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    stack.start_api()
    stack.start_worker(concurrency=8)
    api = Api(stack.base_url, *credentials)
    flow = api.create_flow(
        linear_flow(("t", "template", {"template": "{{ inputs.scheduled_at }}"}))
    )
    # the counts below assume the wall-clock minute does not turn from here to the last count (a
    # new tick would fire once more, correctly): at least 30 s of the minute are left for it,
    # and the slow part (API and worker start-up) is done before this check, not inside it
    (second,) = db.execute("SELECT extract(second FROM clock_timestamp())::float8").fetchone()
    if second > 30:
        time.sleep(61 - second)
    made = {}
    for policy in ("all", "latest", "skip"):
        r = api.http.post(
            f"/api/v1/flows/{flow['id']}/schedules",
            json={"cron": "* * * * *", "catchup": policy, "inputs": {"p": policy}},
        )
        assert r.status_code == 201, r.text
        made[policy] = r.json()["id"]
    # simulate 5 minutes of downtime: the next tick was due 5 minutes ago
    db.execute(
        "UPDATE schedules SET next_fire_at = date_trunc('minute', now()) - interval '5 min' "
        "WHERE id = ANY(%s)",
        ([*made.values()],),
    )
    for _ in range(3):
        stack.start_orchestrator()
    wait_fires(db, made["all"], 6)
    wait_fires(db, made["latest"], 1)
    time.sleep(2)  # let every orchestrator have several passes
    fired_all = runs_of(db, made["all"])
    assert len(fired_all) == 6
    assert len(runs_of(db, made["latest"])) == 1
    # `skip` drops the 5 missed ticks but fires the current minute's, which is on time
    assert [t for t, _ in runs_of(db, made["skip"])] == [t for t, _ in runs_of(db, made["latest"])]
    sched = api.http.get(f"/api/v1/schedules/{made['all']}").json()  # read before the minute turns
    assert len(sched["fires"]) == 6 and sched["next_fire_at"] > sched["fires"][0]["fire_time"]
    for fire_time, run_id in fired_all:
        run = api.wait_run(str(run_id))
        assert run["status"] == "succeeded" and run["outputs"]["text"] == fire_time.isoformat()


def scheduled_runs(db: psycopg.Connection[Any], flow_id: str) -> dict[str, int]:
    """Runs started per scheduled tick, counted in `runs` (not in `schedule_fires`)."""
    rows = db.execute(
        "SELECT inputs->>'scheduled_at', count(*) FROM runs WHERE flow_id = %s GROUP BY 1",
        (flow_id,),
    ).fetchall()
    return dict(rows)


def test_a_live_minute_tick_starts_one_run_per_schedule_across_three_orchestrators(
    stack: Stack, credentials: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    """Three orchestrators are polling when a real minute boundary passes (cron has no seconds:
    the test waits for it, at most ~60 s): each schedule's tick starts exactly one run."""
    stack.start_api()
    stack.start_worker(concurrency=8)
    for _ in range(3):
        stack.start_orchestrator()
    api = Api(stack.base_url, *credentials)
    flows = [
        api.create_flow(linear_flow(("t", "template", {"template": "{{ inputs.scheduled_at }}"})))
        for _ in range(3)
    ]
    made = []
    for flow, policy in zip(flows, ("all", "latest", "skip"), strict=True):
        r = api.http.post(
            f"/api/v1/flows/{flow['id']}/schedules", json={"cron": "* * * * *", "catchup": policy}
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    tick = max(m["next_fire_at"] for m in made)  # the same minute unless one turned meanwhile
    for m in made:
        wait_fires(db, m["id"], 1, timeout=90)
    # Every orchestrator polls each second: let each of them make several passes after the tick
    # (bounded by the database clock), so a duplicate start would have happened by now.
    wait_for(
        lambda: db.execute(
            "SELECT clock_timestamp() > %s::timestamptz + interval '4 s'", (tick,)
        ).fetchone()[0],
        70,
        "four seconds past the tick",
    )
    for flow, m in zip(flows, made, strict=True):
        per_tick = scheduled_runs(db, flow["id"])
        fired = runs_of(db, m["id"])
        assert all(n == 1 for n in per_tick.values()), per_tick
        assert len(per_tick) == len(fired) >= 1, (per_tick, fired)
        assert {t.isoformat() for t, _ in fired} == set(per_tick)
        for _, run_id in fired:
            run = api.wait_run(str(run_id))
            assert run["status"] == "succeeded"
            assert_no_double_success(db, str(run_id))
