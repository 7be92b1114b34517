"""The service files an operator installs: ops/systemd units and ops/compose.yaml.

`test_systemd_units_verify` runs `systemd-analyze verify` on each unit (ExecStart pointed at this
checkout's `flowstudio`, since /opt/flowstudio does not exist here) and checks every ExecStart is a
command line the CLI accepts. `test_compose_services_start_their_commands` parses compose.yaml, checks
its shape (PostgreSQL, RabbitMQ, migrate -> api/orchestrator/worker, worker replicas, grace period),
then starts each Flowstudio service's own command line against this test session's PostgreSQL and
RabbitMQ (there is no Docker engine here): migrate exits 0, the API answers /health/ready, the
orchestrator and the worker register, and a flow runs through them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from flowstudio.cli import build_parser
from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack, free_port

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "ops" / "systemd").glob("*.service"))
EXE = str(Path(sys.executable).with_name("flowstudio"))


def exec_start(unit: Path) -> list[str]:
    line = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_systemd_units_verify(tmp_path: Path) -> None:
    assert {u.name for u in UNITS} == {
        "flowstudio-migrate.service",
        "flowstudio-api.service",
        "flowstudio-orchestrator.service",
        "flowstudio-worker@.service",
    }
    for unit in UNITS:
        argv = exec_start(unit)
        assert argv[0] == "/opt/flowstudio/bin/flowstudio"
        build_parser().parse_args(argv[1:])  # SystemExit(2) if the CLI would refuse it
        text = unit.read_text()
        assert "EnvironmentFile=/etc/flowstudio/flowstudio.env" in text
        if "Type=simple" in text:
            assert "Restart=always" in text and "Requires=flowstudio-migrate.service" in text
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: unit syntax not verified")
    copies = []
    for unit in UNITS:  # all in one directory, found through SYSTEMD_UNIT_PATH (Requires=...)
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/flowstudio/bin/flowstudio", EXE))
        copies.append(copy)
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}
    for copy in copies:
        target = str(copy).replace("@.service", "@1.service")
        done = subprocess.run(
            ["systemd-analyze", "verify", target],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        problems = [ln for ln in done.stderr.splitlines() if copy.name in ln or "flowstudio" in ln]
        assert done.returncode == 0 and not problems, done.stderr


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "ops" / "compose.yaml").read_text())
    return data


def test_compose_services_start_their_commands(
    stack: Stack, base_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    services = compose()["services"]
    assert {"postgres", "rabbitmq", "migrate", "api", "orchestrator", "worker"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["worker"]["stop_grace_period"] == "45s"
    for name in ("api", "orchestrator", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    port = free_port()

    def argv(name: str) -> list[str]:
        cmd = list(services[name]["command"])
        assert cmd[0] == "flowstudio"
        build_parser().parse_args(cmd[1:])
        if name == "api":  # the container binds 0.0.0.0:8005; here a free loopback port
            cmd[cmd.index("--host") + 1] = "127.0.0.1"
            cmd[cmd.index("--port") + 1] = str(port)
        return cmd[1:]

    migrate = subprocess.run(
        [sys.executable, "-m", "flowstudio", *argv("migrate")],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    procs = {
        name: stack._proc(name, argv(name), None) for name in ("api", "orchestrator", "worker")
    }
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and procs["api"].alive, procs["api"].log_tail()
        time.sleep(0.3)
    kinds = {r[0] for r in db.execute("SELECT kind FROM processes").fetchall()}
    while not {"orchestrator", "worker"} <= kinds:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.3)
        kinds = {r[0] for r in db.execute("SELECT kind FROM processes").fetchall()}
    api = Api(f"http://127.0.0.1:{port}", *make_user(base_env["DATABASE_URL"]))
    flow = api.create_flow(linear_flow(("t", "template", {"template": "compose {{ inputs.x }}"})))
    run = api.wait_run(api.start_run(flow["id"], {"x": 1}), timeout=60)
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "compose 1"}
