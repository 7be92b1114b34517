"""`flowstudio bench --json` end to end, small: real PostgreSQL, RabbitMQ and engine subprocesses.

Runs the command as a subprocess (it creates and drops its own database and queue, starts its own
orchestrator and workers), then checks that the last stdout line is the JSON summary with every key
and positive figures, and that the throwaway database is gone. No timing thresholds: this proves the
bench works, not how fast this machine is.
"""

from __future__ import annotations

import psycopg

from tests.support.bench_cli import assert_bench_databases_dropped, run_bench_json

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
    "--ceiling-seconds",
    "0.3",  # the ceiling's 6 samples per backend: 3.6 s, not 36 s
]


def test_bench_json_reports_every_figure_and_drops_its_database(
    base_env: dict[str, str], db: psycopg.Connection[object]
) -> None:
    result, stderr = run_bench_json(base_env, BENCH_ARGS, timeout=360)

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

    assert_bench_databases_dropped(db, stderr, 2)
