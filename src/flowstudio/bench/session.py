"""One bench invocation from start to cleanup, bounded in time and leaving nothing behind.

`run_bench(settings, args)` checks the arguments, then per queue backend (`per_queue_backend`) runs
`bench_session()` in a `Sandbox` of its own (`run_sandboxed`: own database + queue, always closed:
stop processes, drop the database; also on Ctrl-C or SIGTERM), then `write_report()`. `bench_session()` migrates the bench
database, measures the PostgreSQL ceiling before any engine process exists, starts the orchestrator
and workers, and `drive()` runs with a `Driver`: a warm-up burst (not measured), the concurrent case
(`--runs` runs of `--steps` steps at once, its CPU cost measured by `CpuMeter`), then the sequential
case (`--seq-runs` runs one after another). Latency and throughput come from DB timestamps.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import anyio

from flowstudio.bench.ceiling import measure_ceiling
from flowstudio.bench.cpu import CpuMeter
from flowstudio.bench.report import BenchConfig, build_result, write_report
from flowstudio.bench.sandbox import BenchError, Sandbox, per_queue_backend, run_sandboxed
from flowstudio.bench.workload import (
    Driver,
    concurrent_figures,
    create_chain_flow,
    sequential_figures,
)
from flowstudio.queue.factory import make_broker
from flowstudio.queue.outbox import OutboxPublisher
from flowstudio.settings import Settings
from flowstudio.store.db import connect, open_pool
from flowstudio.store.migrate import apply_migrations

log = logging.getLogger(__name__)
ENGINE_CONCURRENCY = 8  # slots per worker: no-op steps are CPU-bound (--concurrency varies it)
STARTERS = 4  # parallel connections starting runs, like a few API requests at once
ORCHESTRATOR_CONNECTIONS = 4  # its pool's max_size
WARMUP_TIMEOUT = 30.0
CONCURRENT_TIMEOUT = 100.0
SEQUENTIAL_TIMEOUT = 40.0
FREE_CONNECTIONS = """SELECT current_setting('max_connections')::int
                             - current_setting('superuser_reserved_connections')::int
                             - (SELECT count(*) FROM pg_stat_activity)::int AS free"""


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    config = BenchConfig(
        runs=args.runs,
        steps=args.steps,
        workers=args.workers,
        concurrency=args.concurrency or ENGINE_CONCURRENCY,
        seq_runs=args.seq_runs,
        as_json=bool(args.json),
        ceiling_seconds=args.ceiling_seconds,
    )
    for name in ("runs", "steps", "workers", "concurrency", "seq_runs"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0.1 <= config.ceiling_seconds <= 60:
        raise ValueError("--ceiling-seconds must be between 0.1 and 60")
    return config


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    """One bench per queue backend asked for (`--queue-backend`; `both`: side by side)."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"flowstudio: error: {exc}\n")
        return 2

    def one(settings: Settings) -> tuple[int, dict[str, Any] | None]:
        started = time.monotonic()
        code, result = run_sandboxed(settings, lambda sandbox: bench_session(sandbox, config))
        if code == 0:
            log.info(
                "bench (%s queue) finished in %.1fs",
                settings.queue_backend,
                time.monotonic() - started,
            )
        return code, result

    code, summary = per_queue_backend(settings, getattr(args, "queue_backend", None), one)
    if summary is None:
        return code
    write_report(summary, bool(args.json))
    return 0


def run_one_bench(
    settings: Settings, args: argparse.Namespace
) -> tuple[int, dict[str, Any] | None]:
    """One bench on `settings`' queue backend, its result not printed (`bench/langgraph_compare.py`)."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"flowstudio: error: {exc}\n")
        return 2, None
    return run_sandboxed(settings, lambda sandbox: bench_session(sandbox, config))


async def bench_session(sandbox: Sandbox, config: BenchConfig) -> dict[str, Any]:
    settings = sandbox.settings
    await apply_migrations(settings)
    log.info("measuring the PostgreSQL ceiling (%gs per connection count)", config.ceiling_seconds)
    ceiling = await measure_ceiling(settings.database_url, config.ceiling_seconds)
    await warn_if_short_of_connections(settings, config)
    sandbox.start_engine(config.workers, config.concurrency)
    pool = await open_pool(settings, min_size=STARTERS, max_size=STARTERS + 1, name="fs-bench")
    broker = make_broker(settings)
    publisher = OutboxPublisher(broker, pool)
    failure: BenchError | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(publisher.flush_loop)
            try:
                result = await drive(sandbox, config, pool, publisher, ceiling)
            except BenchError as exc:  # re-raised below, not wrapped in an exception group
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return result
    finally:
        with anyio.CancelScope(shield=True):
            await publisher.flush_published()
            await broker.close()
            await pool.close()
            sandbox.stop_engine()
            await sandbox.delete_queue()


async def warn_if_short_of_connections(settings: Settings, config: BenchConfig) -> None:
    """Each worker's pool grows to concurrency + 2 connections under this load; say so up front
    if PostgreSQL (shared with whatever else runs here) cannot give that many."""
    needed = config.workers * (config.concurrency + 2) + ORCHESTRATOR_CONNECTIONS + STARTERS + 1
    conn = await connect(settings, name="fs-bench-preflight")
    try:
        cur = await conn.execute(FREE_CONNECTIONS)
        row = await cur.fetchone()
    finally:
        await conn.close()
    free = int(row["free"]) if row else 0
    if free < needed:
        log.warning(
            "the engine may need %d PostgreSQL connections but only %d are free: expect "
            "'too many clients' errors; lower --workers/--concurrency or raise max_connections",
            needed,
            free,
        )


async def drive(
    sandbox: Sandbox,
    config: BenchConfig,
    pool: Any,
    publisher: OutboxPublisher,
    ceiling: dict[int, float],
) -> dict[str, Any]:
    async with pool.connection() as conn:
        owner_id, flow_id = await create_chain_flow(conn, config.steps)
        await sandbox.wait_registered(conn, config.workers)
    driver = Driver(pool, publisher, owner_id, flow_id, sandbox.check_alive)

    warmup = min(config.runs, config.workers * config.concurrency)
    log.info("warm-up: %d runs", warmup)
    await driver.wait_all(await driver.start_runs(warmup, STARTERS), WARMUP_TIMEOUT)

    log.info("concurrent case: %d runs x %d steps", config.runs, config.steps)
    meter = CpuMeter([p.popen.pid for p in sandbox.procs], sandbox.dbname)
    async with pool.connection() as conn:
        await meter.start(conn)
    driver_cpu = time.process_time()
    concurrent_ids = await driver.start_runs(config.runs, STARTERS)
    await driver.wait_all(concurrent_ids, CONCURRENT_TIMEOUT)
    driver_cpu = time.process_time() - driver_cpu
    async with pool.connection() as conn:
        cpu = await meter.stop(conn)

    log.info("sequential case: %d runs one after another", config.seq_runs)
    async with pool.connection() as listen:
        seq_ids = await driver.run_sequential(listen, config.seq_runs, SEQUENTIAL_TIMEOUT)

    async with pool.connection() as conn:
        concurrent = await concurrent_figures(conn, concurrent_ids, config.steps)
        sequential = await sequential_figures(conn, seq_ids)
    if concurrent.succeeded != concurrent.runs or sequential.succeeded != sequential.runs:
        raise BenchError(
            f"runs did not all succeed: concurrent {concurrent.succeeded}/{concurrent.runs}, "
            f"sequential {sequential.succeeded}/{sequential.runs}"
        )
    return build_result(config, ceiling, concurrent, sequential, cpu, driver_cpu)
