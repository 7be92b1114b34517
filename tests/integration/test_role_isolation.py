"""Role isolation replayed as attacks over real HTTP: other users' runs, and what each role may touch.

- Another editor, and a runner of the owner's shared flow, aim `/resume`, `/signal`, `/fork`,
  `/cancel` and `/events` at the owner's run: 404 each time (never a hint it exists), and the run is
  untouched (still waiting, no signal recorded, no forked run).
- The admin role sees and controls everyone's runs and flows, and reads ops stats across owners.
- viewer and runner against secrets, API keys, schedules and batches: exact statuses (403 for a
  missing permission, 404 for what they cannot see) and nothing created behind a refusal.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import make_user
from tests.integration.test_run_control import signal_flow
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack


def user(stack: Stack, database_url: str, role: str) -> Api:
    return Api(stack.base_url, *make_user(database_url, role))


@pytest.fixture
def owner(running_stack: Stack, database_url: str) -> Api:
    return user(running_stack, database_url, "editor")


def share(owner: Api, flow_id: str, who: Api, permission: str) -> None:
    """Publish the flow (shared users run only its published version), then share it."""
    assert owner.http.post(f"/api/v1/flows/{flow_id}/publish").status_code == 200
    email = who.http.get("/api/auth/me").json()["email"]
    r = owner.http.post(
        f"/api/v1/flows/{flow_id}/shares", json={"email": email, "permission": permission}
    )
    assert r.status_code == 202, r.text  # the same answer for known and unknown emails


def attack_run(attacker: Api, rid: str) -> list[tuple[str, int]]:
    """Every control and watch route against `rid`; returns (route, status) pairs."""
    h = attacker.http
    answers = [
        ("GET run", h.get(f"/api/v1/runs/{rid}")),
        ("GET events", h.get(f"/api/v1/runs/{rid}/events")),
        ("resume", h.post(f"/api/v1/runs/{rid}/resume")),
        ("signal", h.post(f"/api/v1/runs/{rid}/signal", json={"node_id": "approve"})),
        ("fork", h.post(f"/api/v1/runs/{rid}/fork", json={"from_node_id": "yes"})),
        ("cancel", h.post(f"/api/v1/runs/{rid}/cancel")),
    ]
    return [(route, r.status_code) for route, r in answers]


def assert_untouched(owner: Api, db: psycopg.Connection[Any], rid: str) -> None:
    run = owner.run(rid)
    assert run["status"] == "waiting" and owner.steps(run)["approve"]["status"] == "waiting"
    (signals,) = db.execute("SELECT count(*) FROM signals WHERE run_id = %s", (rid,)).fetchone()
    (forks,) = db.execute("SELECT count(*) FROM runs WHERE parent_run_id = %s", (rid,)).fetchone()
    assert (signals, forks) == (0, 0)


def test_another_editor_cannot_control_or_watch_my_run(
    owner: Api, running_stack: Stack, database_url: str, db: psycopg.Connection[Any]
) -> None:
    rid = owner.start_run(owner.create_flow(signal_flow())["id"])
    owner.wait_run(rid, statuses=("waiting",))
    other = user(running_stack, database_url, "editor")
    assert attack_run(other, rid) == [
        ("GET run", 404),
        ("GET events", 404),
        ("resume", 404),
        ("signal", 404),
        ("fork", 404),
        ("cancel", 404),
    ]
    assert_untouched(owner, db, rid)
    # a failed run is not resumable by someone else either
    failed = owner.start_run(
        owner.create_flow(linear_flow(("f", "fail", {"retryable": False})))["id"]
    )
    assert owner.wait_run(failed)["status"] == "failed"
    assert other.http.post(f"/api/v1/runs/{failed}/resume").status_code == 404
    assert owner.run(failed)["status"] == "failed"


def test_a_runner_of_a_shared_flow_controls_only_their_own_runs(
    owner: Api, running_stack: Stack, database_url: str, db: psycopg.Connection[Any]
) -> None:
    fid = owner.create_flow(signal_flow())["id"]
    runner = user(running_stack, database_url, "runner")
    share(owner, fid, runner, "run")
    rid = owner.start_run(fid)
    owner.wait_run(rid, statuses=("waiting",))
    assert [s for _, s in attack_run(runner, rid)] == [404] * 6
    assert_untouched(owner, db, rid)
    mine = runner.start_run(fid)  # the runner's own run on the shared flow is theirs to control
    runner.wait_run(mine, statuses=("waiting",))
    r = runner.http.post(
        f"/api/v1/runs/{mine}/signal", json={"node_id": "approve", "payload": {"by": "runner"}}
    )
    assert r.status_code == 202 and r.json()["delivered"] is True
    assert runner.wait_run(mine)["status"] == "succeeded"
    # the flow's owner does not control the runner's run either (it is the runner's alone)
    assert owner.http.get(f"/api/v1/runs/{mine}").status_code == 404
    assert owner.http.post(f"/api/v1/runs/{mine}/cancel").status_code == 404


def test_the_admin_role_sees_and_controls_every_users_runs(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    fid = owner.create_flow(signal_flow())["id"]
    rid = owner.start_run(fid)
    owner.wait_run(rid, statuses=("waiting",))
    admin = user(running_stack, database_url, "admin")
    assert admin.http.get(f"/api/v1/flows/{fid}").status_code == 200
    assert admin.http.get(f"/api/v1/runs/{rid}").status_code == 200
    ops = admin.http.get("/api/v1/ops/stats")
    assert ops.status_code == 200 and ops.json()["scope"] == "all"
    r = admin.http.post(
        f"/api/v1/runs/{rid}/signal", json={"node_id": "approve", "payload": {"by": "admin"}}
    )
    assert r.status_code == 202 and r.json()["delivered"] is True
    assert owner.wait_run(rid)["status"] == "succeeded"
    events = admin.http.get(f"/api/v1/runs/{rid}/events")
    assert events.status_code == 200 and "event: end" in events.text
    # an editor (not admin) never gets the cross-owner scope
    assert owner.http.get("/api/v1/ops/stats").json()["scope"] == "own"


def test_viewer_and_runner_against_secrets_keys_schedules_and_batches(
    owner: Api, running_stack: Stack, database_url: str, db: psycopg.Connection[Any]
) -> None:
    fid = owner.create_flow(linear_flow(("t", "template", {"template": "{{ inputs.x }}"})))["id"]
    viewer = user(running_stack, database_url, "viewer")
    runner = user(running_stack, database_url, "runner")
    share(owner, fid, viewer, "view")
    share(owner, fid, runner, "run")
    sched = owner.http.post(f"/api/v1/flows/{fid}/schedules", json={"cron": "0 0 1 1 *"})
    assert sched.status_code == 201, sched.text
    sid = sched.json()["id"]
    batch = owner.http.post(f"/api/v1/flows/{fid}/batches", json=[{"x": 1}])
    assert batch.status_code == 202, batch.text
    bid = batch.json()["id"]
    (secrets_before,) = db.execute("SELECT count(*) FROM secrets").fetchone()

    for who, cancel in ((viewer, 403), (runner, 404)):  # neither may hold secrets
        h = who.http
        assert h.post("/api/v1/secrets", json={"name": "X_1", "value": "v"}).status_code == 403
        assert h.get("/api/v1/secrets").status_code == 403
        assert h.put("/api/v1/secrets/X_1", json={"value": "v"}).status_code == 403
        assert h.delete("/api/v1/secrets/X_1").status_code == 403
        # schedules: no flows:write; the owner's schedule is not theirs to change
        assert (
            h.post(f"/api/v1/flows/{fid}/schedules", json={"cron": "* * * * *"}).status_code == 403
        )
        assert h.put(f"/api/v1/schedules/{sid}", json={"enabled": False}).status_code == 403
        assert h.delete(f"/api/v1/schedules/{sid}").status_code == 403
        # the owner's batch is not theirs to read or cancel
        assert h.get(f"/api/v1/batches/{bid}").status_code == 404
        assert h.post(f"/api/v1/batches/{bid}/cancel").status_code == cancel  # no runs:write: 403
    (secrets_after,) = db.execute("SELECT count(*) FROM secrets").fetchone()
    assert secrets_after == secrets_before
    assert owner.http.get(f"/api/v1/schedules/{sid}").json()["enabled"] is True

    # API keys: a runner may make one (programs run flows with it), a viewer may not
    assert viewer.http.post("/api/v1/api-keys", json={"name": "v"}).status_code == 403
    made = runner.http.post("/api/v1/api-keys", json={"name": "r"})
    assert made.status_code == 201
    assert made.json()["id"] not in [k["id"] for k in owner.http.get("/api/v1/api-keys").json()]
    assert owner.http.delete(f"/api/v1/api-keys/{made.json()['id']}").status_code == 404

    # batches: only the flow's owner (or an admin) starts one; a run share is not enough
    assert viewer.http.post(f"/api/v1/flows/{fid}/batches", json=[{"x": 2}]).status_code == 403
    assert runner.http.post(f"/api/v1/flows/{fid}/batches", json=[{"x": 3}]).status_code == 403
    (batches,) = db.execute("SELECT count(*) FROM batches WHERE flow_id = %s", (fid,)).fetchone()
    assert batches == 1
