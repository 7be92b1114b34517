"""`flowstudio bench --json` end to end, small: real PostgreSQL, RabbitMQ and engine subprocesses.

Runs the command as a subprocess (it creates and drops its own database and queue, starts its own
orchestrator and workers), then checks that the last stdout line is the JSON summary with every key
and positive figures, and that the throwaway database is gone. No timing thresholds: this proves the
bench works, not how fast this machine is.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
BENCH_ARGS = [
    "bench",
    "--json",
    "--runs",
    "5",
    "--steps",
    "3",
    "--seq-runs",
    "2",
    "--queue-backend",
    "both",
]


def test_bench_json_reports_every_figure_and_drops_its_database(
    base_env: dict[str, str], db: psycopg.Connection[object]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flowstudio", *BENCH_ARGS],
        cwd=ROOT,
        env=base_env,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    for key in ("steps_per_s", "pg_ceiling_tps", "ratio"):
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result)
    for key in ("step_overhead_ms", "run_latency_ms"):
        assert set(result[key]) >= {"p50", "p99"}, (key, result)
        assert 0 < result[key]["p50"] <= result[key]["p99"], (key, result)
    assert abs(result["ratio"] - result["steps_per_s"] / result["pg_ceiling_tps"]) < 0.002
    # both queue backends, side by side in one invocation
    assert set(result["by_queue"]) == {"rabbitmq", "postgres"}
    for backend, figures in result["by_queue"].items():
        assert figures["queue_backend"] == backend and figures["steps_per_s"] > 0, figures

    created = re.findall(r"bench database (flowstudio_bench_\w+) created", proc.stderr)
    assert len(created) == 2, proc.stderr[-2000:]
    for name in created:
        left = db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
        assert left == (0,), f"bench database {name} was not dropped"
