"""The figures of `flowstudio bench --llm`, printed as a table and (with --json) one JSON line last.

`build_llm_result(config, ...)` turns the batch's wall time (its created_at -> finished_at) and the
fake provider's counters into: items/s; provider calls/s; effective concurrency (the mean number of
calls in flight at the provider over the batch, = call-seconds / wall); `pct_of_cap` = calls/s ÷
(cap / latency), the share of what the provider allowed; 429s; peak RSS of the API and of the
largest worker, RSS at 10%, 50% and 100% of the items done (memory must not grow with items) and
the CPU milliseconds per item of each role (API, orchestrator, workers, PostgreSQL backends, the
bench with its fake provider): on a shared machine the wall time swings, the CPU cost much less.
This machine's own ceiling for the workload, `cpu_ceiling_items_per_s` = its cores (those this
process may run on) x 1000 ÷ the CPU ms per item of all roles together: above it the machine,
not the provider, bounds the batch (`bound`: "provider" or "cpu"), and `pct_of_cap` cannot reach
100 whatever the engine does.
With `--batches N` the first batch's figures stay at the top level and the next ones, run on the same
stack against the same provider (whose learned limit carries over: no slow start), are in
`later_batches`, each with the same figures. `write_llm_report(result, as_json)` prints it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flowstudio.bench.report import write_report


@dataclass(frozen=True)
class LlmConfig:
    items: int
    latency: float
    cap: int
    rpm: int
    retry_after: float
    workers: int
    concurrency: int
    as_json: bool
    batches: int = 1  # one after another on the same stack and provider (`later_batches`)


@dataclass
class Checked:
    right: int = 0  # succeeded with the provider's answer to that item's prompt
    failed: int = 0  # runs that did not succeed
    first_error: str | None = None  # the first failed run's error message
    in_order: bool = False


def build_llm_result(
    config: LlmConfig,
    *,
    wall_s: float,
    client_wall_s: float,
    first_call_s: float | None,
    checked: Checked,
    provider: dict[str, Any],
    api_rss_peak: int,
    worker_rss_peak: int,
    rss_at_done: dict[str, dict[str, Any]],
    cpu_s: dict[str, float | None],
) -> dict[str, Any]:
    wall = max(wall_s, 1e-9)
    calls_per_s = provider["calls"] / wall
    allowed_per_s = config.cap / config.latency
    cpu_ms = {
        role: None if used is None else round(used * 1000 / config.items, 2)
        for role, used in cpu_s.items()
    }
    cores = usable_cores()
    ceiling = cpu_ceiling(cpu_ms, cores)
    return {
        "workload": "llm_batch",
        "items": config.items,
        "items_right": checked.right,
        "items_failed": checked.failed,
        "first_error": checked.first_error,
        "in_order": checked.in_order,
        "wall_s": round(wall_s, 3),
        "client_wall_s": round(client_wall_s, 3),
        "first_call_s": None if first_call_s is None else round(first_call_s, 3),
        "items_per_s": round(config.items / wall, 2),
        "provider_calls": provider["calls"],
        "provider_calls_per_s": round(calls_per_s, 2),
        "effective_concurrency": round(provider["busy_call_seconds"] / wall, 2),
        "peak_in_flight": provider["peak_in_flight"],
        "in_flight_by_second": provider["in_flight_by_second"],
        "http_429_at_s": provider["rejected_at"],
        "pct_of_cap": round(100 * calls_per_s / allowed_per_s, 1),
        "ideal_wall_s": round(config.items / allowed_per_s, 3),
        "http_429": provider["rejected_429"],
        "api_rss_peak_mb": round(api_rss_peak / 2**20, 1),
        "worker_rss_peak_mb": round(worker_rss_peak / 2**20, 1),
        "rss_at_done": rss_at_done,
        "cpu_ms_per_item": cpu_ms,
        "cores": cores,
        "cpu_ceiling_items_per_s": ceiling,
        "bound": "cpu" if ceiling is not None and ceiling < allowed_per_s else "provider",
        "latency_s": config.latency,
        "cap": config.cap,
        "rpm": config.rpm,
        "retry_after_s": config.retry_after,
        "workers": config.workers,
        "concurrency": config.concurrency,
    }


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity; all of them where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_ceiling(cpu_ms_per_item: dict[str, float | None], cores: int) -> float | None:
    """Items/s this machine could do with every core busy at the measured CPU cost per item."""
    total = sum(v for v in cpu_ms_per_item.values() if v is not None)
    return round(cores * 1000 / total, 1) if total > 0 else None


def render_llm_table(r: dict[str, Any]) -> str:
    later = r.get("later_batches") or []
    tables = [_table(r, "")]
    tables += [
        _table(x, f"batch {i} of {len(later) + 1}, the provider's limit learned: ")
        for i, x in enumerate(later, start=2)
    ]
    return "flowstudio bench --llm\n" + "".join(tables)


def _table(r: dict[str, Any], which: str) -> str:
    rows = [
        (
            f"LLM batch ({which}{r['items']} items of input -> llm_chat -> output; provider "
            f"{r['latency_s']:g} s per call, cap {r['cap']}"
            + (f", {r['rpm']} rpm" if r["rpm"] else "")
            + f"; {r['workers']} workers x {r['concurrency']})",
            "",
        ),
        ("  items right / in order", f"{r['items_right']} of {r['items']} / {r['in_order']}"),
        (
            "  items failed",
            f"{r['items_failed']}" + (f" (first: {r['first_error']})" if r["first_error"] else ""),
        ),
        ("  wall time (batch created -> finished)", f"{r['wall_s']:.2f} s"),
        ("  ideal at the provider's cap", f"{r['ideal_wall_s']:.2f} s"),
        ("  first call after the upload began", f"{r['first_call_s'] or 0:.2f} s"),
        ("  items/s", f"{r['items_per_s']:.1f}"),
        ("  provider calls/s", f"{r['provider_calls_per_s']:.1f}"),
        ("  % of the provider's cap", f"{r['pct_of_cap']:.1f} %"),
        ("  effective concurrency (mean in flight)", f"{r['effective_concurrency']:.1f}"),
        ("  peak in flight", str(r["peak_in_flight"])),
        ("  in flight, mean per second", " ".join(f"{v:.0f}" for v in r["in_flight_by_second"])),
        ("  429 answers", str(r["http_429"])),
        (
            "  peak RSS: API / largest worker",
            f"{r['api_rss_peak_mb']:.0f} / {r['worker_rss_peak_mb']:.0f} MB",
        ),
    ]
    rows.append(("  CPU per item", _cpu_line(r["cpu_ms_per_item"])))
    if r.get("cpu_ceiling_items_per_s") is not None:
        allowed = r["cap"] / r["latency_s"]
        rows.append(
            (
                f"  this machine's ceiling ({r['cores']} cores / CPU per item)",
                f"{r['cpu_ceiling_items_per_s']:.1f} items/s against the provider's "
                f"{allowed:.1f}: bound by "
                + ("this machine's CPU" if r["bound"] == "cpu" else "the provider"),
            )
        )
    for mark, at in r["rss_at_done"].items():
        workers = ", ".join(f"{w:.0f}" for w in at["worker_rss_mb"])
        rows.append(
            (f"  RSS at {mark} done: API / workers", f"{at['api_rss_mb']:.0f} / {workers} MB")
        )
    width = max(len(k) for k, _ in rows[1:]) + 2
    return "\n".join(f"{k:<{width}}{v}".rstrip() for k, v in rows) + "\n"


def _cpu_line(cpu: dict[str, float | None]) -> str:
    known = [v for v in cpu.values() if v is not None]
    parts = ", ".join(f"{k} {'n/a' if v is None else f'{v:.1f}'}" for k, v in cpu.items())
    return f"{sum(known):.1f} ms ({parts})"


def write_llm_report(result: dict[str, Any], as_json: bool) -> None:
    write_report(result, as_json, render_llm_table)
