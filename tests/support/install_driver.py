"""Drives a freshly installed `flowstudio up` inside a network namespace (tests/packaging).

Run as `unshare -n -- bash -c 'ip link set lo up && exec <venv>/bin/python install_driver.py ...'`
by `test_wheel_installs_and_runs_anywhere`, with the clean virtualenv's interpreter (it imports only
httpx, a Flowstudio dependency). It proves the machine's PostgreSQL and RabbitMQ are unreachable,
starts `flowstudio up` (no database or broker settings: embedded PostgreSQL + PostgreSQL queue) in an
empty directory, waits for /health/ready, checks the designer at `/`, runs a flow as the first admin
(FLOWSTUDIO_ADMIN_*), stops `up` with SIGTERM, starts it again and finds the run, then SIGKILLs
everything (`up`, its children and the embedded PostgreSQL: stale pid files) and starts once more.
It writes one JSON object of findings to stdout; the test asserts on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

BASE = "http://127.0.0.1:8005"


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_up(exe: str, workdir: str, log_path: str) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 -- handed to the child
    return subprocess.Popen(
        [exe, "up", "--workers", "1"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"flowstudio up exited with {proc.returncode}")
        try:
            if httpx.get(f"{BASE}/health/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("not ready in time")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


def login(email: str, password: str) -> httpx.Client:
    http = httpx.Client(base_url=BASE, timeout=30)
    r = http.post("/api/auth/login", json={"email": email, "password": password})
    r.raise_for_status()
    http.headers["authorization"] = f"Bearer {r.json()['access_token']}"
    return http


def wait_run(http: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return run
        time.sleep(0.3)


def main() -> None:
    exe, workdir, log_path = sys.argv[1:4]
    email, password = os.environ["FLOWSTUDIO_ADMIN_EMAIL"], os.environ["FLOWSTUDIO_ADMIN_PASSWORD"]
    out: dict[str, Any] = {
        "system_postgres_reachable": reachable(5432),
        "system_rabbitmq_reachable": reachable(5672),
    }
    proc = start_up(exe, workdir, log_path)
    try:
        out["first_ready_s"] = round(wait_ready(proc), 2)
        ready = httpx.get(f"{BASE}/health/ready").json()
        out["ready_checks"] = ready.get("checks")
        page = httpx.get(f"{BASE}/")
        out["designer_served"] = page.status_code == 200 and '<div id="root">' in page.text
        http = login(email, password)
        out["me_roles"] = http.get("/api/auth/me").json()["roles"]
        definition = {
            "nodes": [
                {"id": "in", "type": "input", "position": {"x": 0, "y": 0}, "data": {"params": {}}},
                {
                    "id": "t",
                    "type": "template",
                    "position": {"x": 200, "y": 0},
                    "data": {"params": {"template": "hello {{ inputs.who }}"}},
                },
                {"id": "out", "type": "output", "position": {"x": 400, "y": 0}, "data": {}},
            ],
            "edges": [
                {"id": "e1", "source": "in", "target": "t"},
                {"id": "e2", "source": "t", "target": "out"},
            ],
        }
        flow = http.post("/api/v1/flows", json={"name": "anywhere", "definition": definition})
        flow.raise_for_status()
        run = http.post(f"/api/v1/flows/{flow.json()['id']}/runs", json={"inputs": {"who": "x"}})
        run.raise_for_status()
        run_id = run.json()["id"]
        done = wait_run(http, run_id)
        out["run_status"], out["run_outputs"] = done["status"], done.get("outputs")
        http.close()
    finally:
        out["first_exit"] = stop(proc)
    out["port_free_after_stop"] = not reachable(8005)
    proc = start_up(exe, workdir, log_path)
    try:
        out["second_ready_s"] = round(wait_ready(proc), 2)
        http = login(email, password)
        out["run_after_restart"] = http.get(f"/api/v1/runs/{run_id}").json()["status"]
        http.close()
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of everything: up, API, workers...
        proc.wait(10)
        pgdata = os.path.join(os.environ["FLOWSTUDIO_HOME"], "pgdata")
        subprocess.run(["pkill", "-9", "-f", pgdata], check=False)  # ...and PostgreSQL
        time.sleep(1)
        out["stale_pid_file"] = os.path.exists(os.path.join(pgdata, "postmaster.pid"))
        proc = start_up(exe, workdir, log_path)
        out["after_kill_ready_s"] = round(wait_ready(proc), 2)
        http = login(email, password)
        out["run_after_kill"] = http.get(f"/api/v1/runs/{run_id}").json()["status"]
        http.close()
    finally:
        out["last_exit"] = stop(proc)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
