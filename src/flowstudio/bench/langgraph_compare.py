"""Side-by-side bench: Flowstudio's engine vs LangGraph + AsyncPostgresSaver, in one invocation.

Run it from a checkout: `pip install -e .[bench]` then `python -m flowstudio.bench.langgraph_compare
[--rounds 3] [--json]` (the `bench/langgraph_compare.py` wrapper at the repository root does the same).
Each round measures, on the same machine and the same PostgreSQL server:

1. LangGraph (`langgraph==1.2.24`, `langgraph-checkpoint-postgres==3.2.0`, pinned by the `bench`
   extra): a throwaway database, `AsyncPostgresSaver` over a psycopg pool, a 10-node linear graph of
   no-op nodes. Concurrent case: `--runs` concurrent `ainvoke(..., durability="sync")` (every
   checkpoint written before the next node runs) -> completed steps/s (nodes run / wall time).
   Sequential case: `--seq-runs` graphs one at a time; a node's overhead is the gap from one node's
   start to the next's (the first from the `ainvoke` call, the last to its return): execute + the
   checkpoint write, as Flowstudio's figure is the gap between two steps' commits.
2. Flowstudio: the `flowstudio bench` machinery (`run_one_bench`: its own database and queue,
   an orchestrator and workers as `flowstudio up` starts them) on the same chain length, reading its
   `completed_steps_per_s` and `step_overhead_ms`; with `--without-group-commit` once more with
   GROUP_COMMIT=off (a third column: what group commit changes, in the same run), and with
   `--without-one-call` once more with ONE_CALL_COMMIT=off (what the one-call commit changes).

The rounds alternate the two engines; `summarise()` gives medians and ranges, `render()` the table,
and `--json` one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from flowstudio.bench.sandbox import BenchError, Sandbox
from flowstudio.bench.session import run_one_bench
from flowstudio.bench.workload import p50_p99
from flowstudio.runtime import run_async
from flowstudio.settings import Settings, load_settings

log = logging.getLogger(__name__)
MAX_FAILURES = (
    10  # runs of one engine lost to a shared server (e.g. its client cap) before giving up
)
LANGGRAPH_POOL = 10  # connections: each of the engine's two workers holds 8 + 2 under this load


def build_graph(steps: int, marks: dict[str, list[float]] | None) -> Any:
    """A linear graph of `steps` no-op nodes; with `marks`, each node records its start time."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        i: int
        tag: str  # the thread id, so a node can find its marks

    def node(name: str) -> Any:
        async def run(state: State) -> dict[str, int]:
            if marks is not None:
                marks[state["tag"]].append(time.perf_counter())
            return {"i": state["i"] + 1}

        run.__name__ = name
        return run

    graph = StateGraph(State)
    names = [f"n{k}" for k in range(1, steps + 1)]
    for name in names:
        graph.add_node(name, node(name))
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    return graph


async def langgraph_round(url: str, runs: int, steps: int, seq_runs: int) -> dict[str, Any]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        url, min_size=LANGGRAPH_POOL, max_size=LANGGRAPH_POOL, kwargs=kwargs, open=False
    ) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        marks: dict[str, list[float]] = {}
        app = build_graph(steps, marks).compile(checkpointer=saver)

        async def one(tag: str) -> tuple[float, float]:
            thread = f"{tag}-{uuid.uuid4().hex}"
            marks[thread] = []
            started = time.perf_counter()
            out = await app.ainvoke(
                {"i": 0, "tag": thread}, {"configurable": {"thread_id": thread}}, durability="sync"
            )
            if out["i"] != steps:
                raise BenchError(f"LangGraph run ended with i={out['i']}, expected {steps}")
            return started, time.perf_counter()

        await asyncio.gather(*(one("warm") for _ in range(min(runs, 16))))
        t0 = time.perf_counter()
        spans = await asyncio.gather(*(one("conc") for _ in range(runs)))
        wall = time.perf_counter() - t0
        latencies = [(b - a) * 1000 for a, b in spans]
        gaps: list[float] = []
        for _ in range(seq_runs):
            marks.clear()
            started, ended = await one("seq")
            (starts,) = marks.values()
            points = [started, *starts[1:], ended]
            gaps += [(b - a) * 1000 for a, b in itertools.pairwise(points)]
    return {
        "completed_steps_per_s": round(runs * steps / wall, 1),
        "wall_s": round(wall, 3),
        "run_latency_ms": p50_p99(latencies),
        "step_overhead_ms": p50_p99(gaps),
    }


def run_langgraph(settings: Settings, runs: int, steps: int, seq_runs: int) -> dict[str, Any]:
    sandbox = Sandbox.create(settings)
    sandbox.queue_deleted = True  # LangGraph has no queue
    try:
        url = sandbox.settings.database_url
        return dict(run_async(lambda: langgraph_round(url, runs, steps, seq_runs)))
    finally:
        sandbox.close()


def run_flowstudio(
    settings: Settings, args: argparse.Namespace, setting: tuple[str, str] | None = None
) -> dict[str, Any]:
    """One `flowstudio bench`; `setting` (name, value), e.g. ("GROUP_COMMIT", "off"), overrides
    that setting for its engine processes."""
    if setting is None:
        return _run_flowstudio(settings, args)
    name, value = setting
    saved = os.environ.get(name)
    os.environ[name] = value  # the sandbox's children inherit it
    try:
        return _run_flowstudio(settings, args)
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _run_flowstudio(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    bench_args = argparse.Namespace(
        runs=args.runs,
        steps=args.steps,
        workers=args.workers,
        concurrency=args.concurrency,
        seq_runs=args.seq_runs,
        json=True,
        ceiling_seconds=3.0,  # the bench's own default: each round measured as before
    )
    code, result = run_one_bench(settings, bench_args)
    if code != 0 or result is None:
        raise BenchError(f"flowstudio bench failed with exit code {code}")
    return {
        "completed_steps_per_s": result["completed_steps_per_s"],
        "wall_s": result["wall_s"],
        "run_latency_ms": result["run_latency_ms"],
        "step_overhead_ms": result["step_overhead_ms"],
        "checkpoint_commits_per_s": result["checkpoint_commits_per_s"],
    }


FIGURES = {
    "completed_steps_per_s": (
        "completed steps/s (concurrent)",
        lambda r: r["completed_steps_per_s"],
    ),
    "step_overhead_p50_ms": (
        "per-step overhead p50 ms (sequential)",
        lambda r: r["step_overhead_ms"]["p50"],
    ),
    "step_overhead_p99_ms": (
        "per-step overhead p99 ms (sequential)",
        lambda r: r["step_overhead_ms"]["p99"],
    ),
    "run_latency_p50_ms": ("run latency p50 ms (concurrent)", lambda r: r["run_latency_ms"]["p50"]),
}

# the per-step figures are about 1 ms: one decimal would show 1.0 against 1.1 for a 1% difference
DECIMALS = {"step_overhead_p50_ms": 2, "step_overhead_p99_ms": 2}

ENGINES = {
    "langgraph": "LangGraph + PostgresSaver",
    "flowstudio": "Flowstudio",
    "flowstudio_no_group": "Flowstudio GROUP_COMMIT=off",
    "flowstudio_no_one_call": "Flowstudio ONE_CALL_COMMIT=off",
}


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine in [e for e in ENGINES if e in rounds[0]]:
        figures: dict[str, Any] = {}
        for key, (_, pick) in FIGURES.items():
            values = [float(pick(r[engine])) for r in rounds]
            figures[key] = {
                "median": round(statistics.median(values), 3),
                "min": min(values),
                "max": max(values),
            }
        out[engine] = figures
    lg, fs = out["langgraph"], out["flowstudio"]
    out["throughput_ratio"] = round(
        fs["completed_steps_per_s"]["median"] / max(lg["completed_steps_per_s"]["median"], 1e-9), 3
    )
    out["overhead_p50_ratio"] = round(
        fs["step_overhead_p50_ms"]["median"] / max(lg["step_overhead_p50_ms"]["median"], 1e-9), 3
    )
    out["rounds"] = rounds
    return out


def render(summary: dict[str, Any], args: argparse.Namespace) -> str:
    head = (
        f"{args.runs} concurrent x {args.steps}-node no-op chain; {args.seq_runs} sequential; "
        f"{len(summary['rounds'])} rounds, median [min-max]"
    )
    engines = [e for e in ENGINES if e in summary]
    rows: list[tuple[str, ...]] = [("figure", *(ENGINES[e] for e in engines))]
    for key, (label, _) in FIGURES.items():
        cells = [summary[e][key] for e in engines]
        d = DECIMALS.get(key, 1)
        rows.append(
            (label, *(f"{c['median']:.{d}f} [{c['min']:.{d}f}-{c['max']:.{d}f}]" for c in cells))
        )
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
    lines = [head, *("".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)]
    lines.append(
        f"Flowstudio / LangGraph: throughput x{summary['throughput_ratio']:.2f}, "
        f"per-step overhead p50 x{summary['overhead_p50_ratio']:.2f}"
    )
    return "\n".join(lines) + "\n"


def one_round(settings: Settings, args: argparse.Namespace, k: int) -> dict[str, dict[str, Any]]:
    """The engines one after another; an engine whose bench failed (e.g. a shared server's client
    cap: "too many clients") is run again, up to MAX_FAILURES times in all."""
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "langgraph": lambda: run_langgraph(settings, args.runs, args.steps, args.seq_runs),
        "flowstudio": lambda: run_flowstudio(settings, args),
    }
    if args.without_group_commit:
        runs["flowstudio_no_group"] = lambda: run_flowstudio(
            settings, args, ("GROUP_COMMIT", "off")
        )
    if args.without_one_call:
        runs["flowstudio_no_one_call"] = lambda: run_flowstudio(
            settings, args, ("ONE_CALL_COMMIT", "off")
        )
    one: dict[str, dict[str, Any]] = {}
    for engine, run in runs.items():
        log.info("round %d/%d: %s", k, args.rounds, ENGINES[engine])
        one[engine] = _with_retries(run)
    log.info("round %d result: %s", k, msgspec.json.encode(one).decode())  # kept if a later fails
    return one


def _with_retries(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    for failure in range(1, MAX_FAILURES + 1):
        try:
            return run()
        except Exception as exc:  # e.g. "too many clients" on a shared server: wait, run again
            log.error("failed (%d/%d): %s", failure, MAX_FAILURES, exc)
            if failure == MAX_FAILURES:
                raise BenchError(f"gave up after {failure} failures: {exc}") from exc
            time.sleep(20)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seq-runs", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--without-group-commit",
        action="store_true",
        help="also run Flowstudio with GROUP_COMMIT=off each round (a third column)",
    )
    p.add_argument(
        "--without-one-call",
        action="store_true",
        help="also run Flowstudio with ONE_CALL_COMMIT=off each round (another column)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if min(args.rounds, args.runs, args.steps, args.seq_runs, args.workers, args.concurrency) < 1:
        sys.stderr.write("langgraph_compare: every count must be >= 1\n")
        return 2
    if args.steps < 2:
        sys.stderr.write("langgraph_compare: --steps must be >= 2 (input ... output)\n")
        return 2
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
    except ImportError:
        sys.stderr.write("langgraph_compare: install the peer first: pip install -e '.[bench]'\n")
        return 2
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        rounds = [one_round(settings, args, k) for k in range(1, args.rounds + 1)]
    except BenchError as exc:
        log.error("compare bench failed: %s", exc)
        return 1
    summary = summarise(rounds)
    sys.stdout.write(render(summary, args))
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
