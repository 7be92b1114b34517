"""The Windows-service path, exercised on Linux: PyInstaller freezes `flowstudio` with
ops/windows/flowstudio.spec, and the frozen binary's worker completes real steps.

The binary is built once per session (a few minutes). A private stack runs the API and an orchestrator
from this checkout and ONLY the frozen worker, so every step of the run below (including a `hash` step,
which goes through the worker's spawn process pool: `multiprocessing.freeze_support()` in the frozen
entry point) was executed by it. The frozen `migrate` also runs, proving the migrations are bundled.
Windows itself (NSSM, the selector event loop) is not available here: see the README.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.client import Api, linear_flow
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Proc, Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("pyinstaller", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("PyInstaller is not installed (pip install .[dev])")
    out = tmp_path_factory.mktemp("pyinstaller")
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("pyinstaller")),
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(out / "dist"),
            "--workpath",
            str(out / "build"),
            str(ROOT / "ops" / "windows" / "flowstudio.spec"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    exe = out / "dist" / "flowstudio" / "flowstudio"
    assert exe.is_file()
    return exe


@pytest.mark.timeout(1800)
def test_frozen_worker_completes_real_steps(
    frozen: Path,
    stack: Stack,
    base_env: dict[str, str],
    credentials: tuple[str, str],
    db: psycopg.Connection[Any],
) -> None:
    env = {k: v for k, v in base_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    migrate = subprocess.run(
        [str(frozen), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    stack.start_api()
    stack.start_orchestrator()
    worker = Proc("frozen-worker", [], env, stack.tmp / "frozen-worker.log")
    worker.args = ["worker", "--concurrency", "4"]
    stack.procs.append(worker)
    log = open(worker.log_path, "ab")  # noqa: SIM115 -- handed to the child
    worker.popen = subprocess.Popen(
        [str(frozen), *worker.args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    api = Api(stack.base_url, *credentials)
    flow = api.create_flow(
        linear_flow(
            ("t", "template", {"template": "frozen {{ inputs.x }}"}),
            ("h", "hash", {"algorithm": "sha256", "text": "{{ t.text }}"}),
        )
    )
    runs = [api.start_run(flow["id"], {"x": i}) for i in range(3)]
    for rid in runs:
        run = api.wait_run(rid, timeout=120)
        assert run["status"] == "succeeded", worker.log_tail()
        assert len(run["outputs"]["digest"]) == 64
    (pid,) = db.execute("SELECT pid FROM processes WHERE kind = 'worker'").fetchone()
    assert pid == worker.popen.pid and worker.alive, "the frozen worker ran every step"
    assert os.path.getsize(worker.log_path) > 0
