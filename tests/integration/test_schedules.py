"""Cron schedules over the session stack: bad input is refused with field paths and schedules are
owned (another user gets 404). `runs_of` / `wait_fires` serve test_isolated_processes.py, where three
orchestrators fire missed ticks and a live minute tick, each once."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack


def runs_of(db: psycopg.Connection[Any], schedule_id: str) -> list[tuple[Any, Any]]:
    return db.execute(
        "SELECT fire_time, run_id FROM schedule_fires WHERE schedule_id = %s ORDER BY fire_time",
        (schedule_id,),
    ).fetchall()


def wait_fires(db: psycopg.Connection[Any], schedule_id: str, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(runs_of(db, schedule_id)) < n:
        assert time.monotonic() < deadline, f"only {len(runs_of(db, schedule_id))} of {n} fired"
        time.sleep(0.2)


def test_schedule_validation_and_ownership(
    api: Api, database_url: str, running_stack: Stack
) -> None:
    flow = api.create_flow(linear_flow(("t", "template", {"template": "x"})))
    url = f"/api/v1/flows/{flow['id']}/schedules"
    r = api.http.post(url, json={"cron": "every tuesday"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.cron"
    r = api.http.post(url, json={"cron": "0 * * * *", "timezone": "Mars/Base"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "body.timezone"
    r = api.http.post(url, json={"cron": "0 * * * *", "catchup": "sometimes"})
    assert r.status_code == 422
    sid = api.http.post(url, json={"cron": "0 * * * *"}).json()["id"]
    other = Api(running_stack.base_url, *make_user(database_url))
    assert other.http.get(f"/api/v1/schedules/{sid}").status_code == 404
    assert other.http.put(f"/api/v1/schedules/{sid}", json={"enabled": False}).status_code == 404
    assert other.http.delete(f"/api/v1/schedules/{sid}").status_code == 404
    assert other.http.get(url).status_code == 404
    r = api.http.put(f"/api/v1/schedules/{sid}", json={"cron": "30 2 * * *", "enabled": False})
    assert r.status_code == 200 and r.json()["cron"] == "30 2 * * *" and not r.json()["enabled"]
    assert api.http.delete(f"/api/v1/schedules/{sid}").status_code == 204
    assert api.http.get(f"/api/v1/schedules/{sid}").status_code == 404
