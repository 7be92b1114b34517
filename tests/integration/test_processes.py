"""Process-level behaviour of the CLI: bad input exits 2 with a message, and `migrate` twice is a
no-op. (Several orchestrators and SIGTERM hand-back are in test_isolated_processes.py.)
"""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstudio", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_bad_input_exits_2_with_a_message(base_env: dict[str, str]) -> None:
    r = run_cli("worker", "--concurrency", "0", env=base_env)
    assert r.returncode == 2 and "concurrency" in r.stderr
    r = run_cli("user", "create", "--email", "nobody", "--password", "x", env=base_env)
    assert r.returncode == 2 and "email" in r.stderr
    r = run_cli("frobnicate", env=base_env)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run_cli("worker", env={**base_env, "EVENT_LOOP": "tornado"})
    assert r.returncode == 2 and "EVENT_LOOP must be one of" in r.stderr
    r = run_cli("worker", env={**base_env, "LEASE_SECONDS": "30s"})  # was a traceback, exit 1
    assert r.returncode == 2 and "LEASE_SECONDS must be a number, not '30s'" in r.stderr
    assert "Traceback" not in r.stderr


def test_migrate_twice_is_a_no_op(base_env: dict[str, str]) -> None:
    r = run_cli("migrate", env=base_env)
    assert r.returncode == 0 and "none (up to date)" in r.stderr
