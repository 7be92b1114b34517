"""bench/langgraph_compare's arithmetic and table: medians and ratios from per-round figures, the
per-step figures printed to 0.01 ms (about 1 ms each: one decimal would show 1.0 against 1.1 for a
1% difference), and bad counts refused with exit code 2 before anything runs."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from flowstudio.bench.langgraph_compare import main, render, summarise


def engine(steps_s: float, p50: float) -> dict[str, Any]:
    return {
        "completed_steps_per_s": steps_s,
        "step_overhead_ms": {"p50": p50, "p99": p50 * 3},
        "run_latency_ms": {"p50": 100.0, "p99": 200.0},
    }


def rounds() -> list[dict[str, dict[str, Any]]]:
    return [
        {"langgraph": engine(780.0, 1.104), "flowstudio": engine(1700.0, 1.086)},
        {"langgraph": engine(760.0, 1.125), "flowstudio": engine(1650.0, 1.172)},
        {"langgraph": engine(800.0, 1.149), "flowstudio": engine(1720.0, 1.126)},
    ]


def test_summary_takes_medians_and_their_ratios() -> None:
    summary = summarise(rounds())
    assert summary["langgraph"]["completed_steps_per_s"]["median"] == 780.0
    assert summary["flowstudio"]["step_overhead_p50_ms"] == {
        "median": 1.126,
        "min": 1.086,
        "max": 1.172,
    }
    assert summary["throughput_ratio"] == round(1700.0 / 780.0, 3)
    assert summary["overhead_p50_ratio"] == round(1.126 / 1.125, 3)


def test_table_prints_per_step_figures_to_a_hundredth_of_a_ms() -> None:
    args = argparse.Namespace(runs=200, steps=10, seq_runs=30)
    table = render(summarise(rounds()), args)
    p50 = next(line for line in table.splitlines() if line.startswith("per-step overhead p50"))
    assert "1.12 [1.10-1.15]" in p50 and "1.13 [1.09-1.17]" in p50
    steps = next(line for line in table.splitlines() if line.startswith("completed steps/s"))
    assert "780.0 [760.0-800.0]" in steps
    assert table.rstrip().endswith("throughput x2.18, per-step overhead p50 x1.00")


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--runs", "0"], ["--steps", "1"]])
def test_bad_counts_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "langgraph_compare:" in capsys.readouterr().err
