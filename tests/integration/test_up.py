"""The README's start command, for real: `ops/up.sh` brings up API + orchestrator + a worker that
run a flow end to end, and SIGTERM stops every child process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.client import Api, linear_flow
from tests.support.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_ops_up_runs_the_whole_platform(
    base_env: dict[str, str], user_credentials: tuple[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **base_env,
        "BACKEND_HOST": "127.0.0.1",
        "BACKEND_PORT": str(port),
        "FLOWSTUDIO_ENV_FILE": "",
    }
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 -- handed to the child
    proc = subprocess.Popen(
        ["bash", str(ROOT / "ops" / "up.sh"), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.3)
        api = Api(f"http://127.0.0.1:{port}", *user_credentials)
        flow = api.create_flow(linear_flow(("t", "template", {"template": "up {{ inputs.x }}"})))
        run = api.wait_run(api.start_run(flow["id"], {"x": 1}), timeout=60)
        assert run["status"] == "succeeded" and run["outputs"] == {"text": "up 1"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    deadline = time.monotonic() + 15
    while True:  # every child (API, orchestrator, worker) shares the process group and must exit
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "children left running after SIGTERM"
        time.sleep(0.2)
