"""The README's start command, for real: `ops/up.sh` brings up API + orchestrator + a worker that
run a flow end to end, one scrape of the API's /metrics covers the processes it runs (a METRICS_PORT
in the environment is not handed to the children), and SIGTERM stops every child process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import Api, linear_flow
from tests.support.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def scrape_until_counted(url: str, within: float = 30) -> dict[str, float]:
    """Gauges of interest from /metrics, once the finished run shows in flowstudio_runs_total and
    a live worker and orchestrator show (live: a heartbeat within LEASE_SECONDS, 3 s here, and an
    orchestrator beats every 2 s, so one late beat on a loaded machine shows it stale a moment)."""
    deadline = time.monotonic() + within
    while True:
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
            for s in family.samples:
                if s.name == "flowstudio_processes":
                    out[f"flowstudio_processes:{s.labels['kind']}"] = s.value
                elif s.name == "flowstudio_runs_total" and s.labels["status"] == "succeeded":
                    out["succeeded"] = s.value
                elif s.name == "flowstudio_workers":
                    out["flowstudio_workers"] = s.value
        wanted = ("succeeded", "flowstudio_workers", "flowstudio_processes:orchestrator")
        if all(out.get(k, 0) >= 1 for k in wanted) or time.monotonic() > deadline:
            assert out.get("succeeded", 0) >= 1, out
            return out
        time.sleep(0.5)


def test_ops_up_runs_the_whole_platform(
    base_env: dict[str, str], user_credentials: tuple[str, str], tmp_path: Path
) -> None:
    port = free_port()
    metrics_port = free_port()
    env = {
        **base_env,
        "BACKEND_HOST": "127.0.0.1",
        "BACKEND_PORT": str(port),
        "FLOWSTUDIO_ENV_FILE": "",
        "METRICS_PORT": str(metrics_port),
        "METRICS_CACHE_SECONDS": "0.5",
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
        families = scrape_until_counted(f"http://127.0.0.1:{port}/metrics")
        assert families["flowstudio_workers"] >= 1  # the session stack's workers share the database
        assert families["flowstudio_processes:orchestrator"] >= 1
        with pytest.raises(httpx.HTTPError):  # children do not serve METRICS_PORT under `up`
            httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
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
