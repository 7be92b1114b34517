"""`flowstudio bench ...` as a subprocess for the bench tests: its JSON summary and its cleanup.

`run_bench_json(env, args)` runs the command from the repository root, asserts exit code 0 and
returns the JSON object of the last stdout line and the stderr log. `assert_bench_databases_dropped
(db, stderr, count)` checks that the log names `count` throwaway databases and none is left.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def run_bench_json(env: dict[str, str], args: list[str], timeout: float = 600) -> tuple[Any, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "flowstudio", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def assert_bench_databases_dropped(db: psycopg.Connection[Any], stderr: str, count: int) -> None:
    created = re.findall(r"bench database (flowstudio_bench_\w+) created", stderr)
    assert len(created) == count, stderr[-2000:]
    for name in created:
        left = db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
        assert left == (0,), f"bench database {name} was not dropped"
