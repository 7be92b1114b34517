"""The install a new user does: build the wheel, `pip install` it into a clean virtualenv, and run
`flowstudio up` with no database or broker settings in an empty directory, inside a network namespace
where the machine's PostgreSQL and RabbitMQ cannot be reached (`unshare -n`, loopback up).

`test_wheel_contains_migrations_and_designer` checks the wheel's contents (CI builds it here).
`test_wheel_installs_and_runs_anywhere` installs it (dependencies from the package index, outside the
namespace), then `tests/support/install_driver.py` runs inside the namespace: embedded PostgreSQL,
PostgreSQL queue, first admin from FLOWSTUDIO_ADMIN_*, /health/ready, the designer at `/`, a flow run,
SIGTERM, a second start that finds the run, a kill -9 of everything and a start that recovers. A generated SECRET_KEY must land in FLOWSTUDIO_HOME 0600.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "support" / "install_driver.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = out.glob("flowstudio-*.whl")
    return path


def test_wheel_contains_migrations_and_designer(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "migrations").glob("*.sql")}
    packed = {n.rsplit("/", 1)[1] for n in names if n.startswith("flowstudio/_data/migrations/")}
    assert shipped and packed == shipped
    if (ROOT / "frontend" / "dist" / "index.html").is_file() or shutil.which("npm"):
        assert "flowstudio/_data/ui/index.html" in names
        assert any(n.startswith("flowstudio/_data/ui/assets/") for n in names)
    assert "flowstudio/cli.py" in names and not any("node_modules" in n for n in names)


@pytest.fixture(scope="module")
def clean_venv(wheel: Path) -> Iterator[Path]:
    venv = Path(tempfile.mkdtemp(prefix="fs-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=900)
        yield venv
    finally:
        shutil.rmtree(venv, ignore_errors=True)


@pytest.mark.timeout(1200)
def test_wheel_installs_and_runs_anywhere(clean_venv: Path) -> None:
    if not shutil.which("unshare") or not shutil.which("ip") or os.geteuid() != 0:
        pytest.skip("needs root with unshare and ip to build a network namespace")
    # /tmp, not pytest's 0700 tmp dir: as root the embedded server runs as its own system user
    home = Path(tempfile.mkdtemp(prefix="fs-home-"))
    workdir = Path(tempfile.mkdtemp(prefix="fs-empty-"))
    log_path = home / "up.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "FLOWSTUDIO_", "DATABASE_URL", "AMQP_URL", "QUEUE_"))
        and k not in ("SECRET_KEY", "UI_DIST", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(
        {
            "FLOWSTUDIO_HOME": str(home),
            "FLOWSTUDIO_ENV_FILE": "",
            "FLOWSTUDIO_ADMIN_EMAIL": "first@example.com",
            "FLOWSTUDIO_ADMIN_PASSWORD": "first-admin-password",
            "BACKEND_HOST": "127.0.0.1",
            "PATH": f"{clean_venv / 'bin'}:{env.get('PATH', '')}",
        }
    )
    py = clean_venv / "bin" / "python"
    exe = clean_venv / "bin" / "flowstudio"
    script = f"ip link set lo up && exec {py} {DRIVER} {exe} {workdir} {log_path}"
    try:
        done = subprocess.run(
            ["unshare", "-n", "--", "bash", "-c", script],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=900,
        )
        up_log = log_path.read_text(errors="replace") if log_path.exists() else ""
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{up_log[-6000:]}"
        found = json.loads(done.stdout.strip().splitlines()[-1])
        sys.stdout.write(f"install-anywhere findings: {found}\n")
        assert not found["system_postgres_reachable"] and not found["system_rabbitmq_reachable"]
        assert found["ready_checks"] == {"database": "ok", "broker": "ok"}
        assert found["designer_served"] is True
        assert found["me_roles"] == ["admin"]
        assert found["run_status"] == "succeeded" and found["run_outputs"] == {"text": "hello x"}
        assert found["first_exit"] == 0 and found["last_exit"] == 0, up_log[-4000:]
        assert found["run_after_restart"] == "succeeded"
        assert found["stale_pid_file"] is True  # the kill -9 left one behind...
        assert found["run_after_kill"] == "succeeded"  # ...and the next start recovered
        key = home / "secret_key"
        assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (home / "pgdata" / "PG_VERSION").is_file()
        assert not list(workdir.iterdir()), "flowstudio up wrote into the working directory"
    finally:
        subprocess.run(["pkill", "-9", "-f", str(home)], check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
