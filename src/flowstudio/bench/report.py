"""The bench's output: one `BenchResult`, printed as a human table and (with --json) one JSON line.

`build_result(config, ceiling, concurrent, sequential)` computes the headline figures: `steps_per_s`
is step *transitions* per second in the concurrent case (every `run_events` row of kind `step`:
pending -> ready, ready -> running, running -> succeeded, i.e. three per no-op step), `ratio`
divides it by the best PostgreSQL ceiling. `write_report(result, as_json)` writes the table to
stdout and, with --json, the JSON object as the very last line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from flowstudio.bench.cpu import CpuUsage
from flowstudio.bench.workload import ConcurrentFigures, SequentialFigures, p50_p99

STEPS_PER_S_MEANS = (
    "step state transitions per second (run_events of kind 'step': pending->ready, ready->running, "
    "running->succeeded) across the concurrent runs, from the first run's creation to the last "
    "run's finish"
)


@dataclass(frozen=True)
class BenchConfig:
    runs: int
    steps: int
    workers: int
    concurrency: int
    seq_runs: int
    as_json: bool
    ceiling_seconds: float = 3.0


# Positional figures of one bench run (alike in shape to other long signatures, nothing shared).
def build_result(
    config: BenchConfig,
    ceiling: dict[int, float],
    concurrent: ConcurrentFigures,
    sequential: SequentialFigures,
    cpu: CpuUsage,
    driver_cpu_s: float,
) -> dict[str, Any]:
    best = max(ceiling.values())
    per_step = max(concurrent.completed_steps, 1)

    def cpu_ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000 / per_step, 3)

    steps_per_s = concurrent.transitions_per_s
    mean_step = (
        sum(sequential.run_latency_ms) / len(sequential.run_latency_ms) / config.steps
        if sequential.run_latency_ms
        else 0.0
    )
    return {
        "steps_per_s": round(steps_per_s, 1),
        "pg_ceiling_tps": round(best, 1),
        "ratio": round(steps_per_s / best, 3) if best else 0.0,
        "step_overhead_ms": p50_p99(sequential.step_gaps_ms),
        "run_latency_ms": p50_p99(concurrent.run_latency_ms),
        "steps_per_s_means": STEPS_PER_S_MEANS,
        "completed_steps_per_s": round(concurrent.completed_steps_per_s, 1),
        "checkpoint_commits_per_s": round(concurrent.commits_per_s, 1),
        "commit_ratio": round(concurrent.commits_per_s / best, 3) if best else 0.0,
        "pg_ceiling_by_connections": {str(k): round(v, 1) for k, v in ceiling.items()},
        "seq_run_latency_ms": p50_p99(sequential.run_latency_ms),
        "seq_step_overhead_mean_ms": round(mean_step, 3),
        "seq_dispatch_ms": p50_p99(sequential.dispatch_ms),
        "seq_claim_to_commit_ms": p50_p99(sequential.work_ms),
        "cpu_ms_per_step": {
            "engine": cpu_ms(cpu.engine_s),
            "postgres": cpu_ms(cpu.postgres_s),
            "bench_driver": cpu_ms(driver_cpu_s),
        },
        "wall_s": round(concurrent.wall_s, 3),
        "runs": config.runs,
        "steps": config.steps,
        "workers": config.workers,
        "concurrency": config.concurrency,
        "seq_runs": config.seq_runs,
    }


def render_table(r: dict[str, Any]) -> str:
    ceiling = ", ".join(f"{k} conn: {v:.0f}" for k, v in r["pg_ceiling_by_connections"].items())
    rows = [
        (
            f"concurrent case ({r['runs']} runs x {r['steps']} no-op steps, "
            f"{r['workers']} workers x {r['concurrency']})",
            "",
        ),
        ("  step transitions/s (steps_per_s)", f"{r['steps_per_s']:.1f}"),
        ("  completed steps/s", f"{r['completed_steps_per_s']:.1f}"),
        ("  checkpoint commits/s", f"{r['checkpoint_commits_per_s']:.1f}"),
        ("  wall time", f"{r['wall_s']:.2f} s"),
        ("  CPU per completed step", _cpu_line(r["cpu_ms_per_step"])),
        ("  run latency p50 / p99", _p50_p99(r["run_latency_ms"], 1)),
        (f"sequential case ({r['seq_runs']} runs one after another)", ""),
        ("  per-step overhead p50 / p99", _p50_p99(r["step_overhead_ms"], 2)),
        ("  per-step overhead mean", f"{r['seq_step_overhead_mean_ms']:.2f} ms"),
        ("  of which ready -> running p50 / p99", _p50_p99(r["seq_dispatch_ms"], 2)),
        ("  of which running -> succeeded p50 / p99", _p50_p99(r["seq_claim_to_commit_ms"], 2)),
        ("  run latency p50 / p99", _p50_p99(r["seq_run_latency_ms"], 1)),
        ("PostgreSQL ceiling (INSERT+UPDATE tx/s)", f"{r['pg_ceiling_tps']:.0f}"),
        ("  by connections", ceiling),
        ("ratio steps_per_s / ceiling", f"{r['ratio']:.3f}"),
        ("ratio commits/s / ceiling", f"{r['commit_ratio']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows) + 2
    lines = ["flowstudio bench", *(f"{k:<{width}}{v}".rstrip() for k, v in rows)]
    lines.append(f"(steps_per_s = {r['steps_per_s_means']})")
    return "\n".join(lines) + "\n"


def _p50_p99(figure: dict[str, float], decimals: int) -> str:
    return f"{figure['p50']:.{decimals}f} / {figure['p99']:.{decimals}f} ms"


def _cpu_line(cpu: dict[str, float | None]) -> str:
    return ", ".join(
        f"{k.replace('_', ' ')} {'n/a' if v is None else f'{v:.2f} ms'}" for k, v in cpu.items()
    )


def write_report(
    result: dict[str, Any],
    as_json: bool,
    render: Callable[[dict[str, Any]], str] | None = None,
) -> None:
    """The table (`render`, default the engine bench's) and, with --json, the JSON line last."""
    render = render or render_table
    by_queue = result.get("by_queue")
    if by_queue:  # --queue-backend both: one table per backend, the JSON carries both
        for backend, one in by_queue.items():
            sys.stdout.write(f"== queue backend: {backend} ==\n" + render(one))
    else:
        sys.stdout.write(render(result))
    if as_json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    sys.stdout.flush()
