"""One bench invocation from start to cleanup, bounded in time and leaving nothing behind.

`run_bench(settings, args)` checks the arguments, creates the `Sandbox` (own database + queue), runs
`bench_session()` under the event loop and always calls `sandbox.close()` (stop processes, drop the
database), then `write_report()`. `bench_session()` migrates the bench database, measures the PostgreSQL
ceiling before any engine process exists, starts the orchestrator and workers, and with a `Driver`
runs: a warm-up burst (not measured), the concurrent case (`--runs` runs of `--steps` steps at once),
and the sequential case (`--seq-runs` runs one after another); figures come from DB timestamps.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import anyio
import psycopg
from psycopg.rows import dict_row

from flowstudio.bench.ceiling import measure_ceiling
from flowstudio.bench.report import BenchConfig, build_result, write_report
from flowstudio.bench.sandbox import BenchError, Sandbox
from flowstudio.bench.workload import (
    Driver,
    concurrent_figures,
    create_chain_flow,
    sequential_figures,
)
from flowstudio.queue.broker import RabbitBroker
from flowstudio.queue.outbox import OutboxPublisher
from flowstudio.runtime import run_async
from flowstudio.settings import Settings
from flowstudio.store.db import connect, open_pool
from flowstudio.store.migrate import apply_migrations

log = logging.getLogger(__name__)
STARTERS = 8  # parallel connections starting runs, like a few API requests at once
WARMUP_TIMEOUT = 30.0
CONCURRENT_TIMEOUT = 100.0
SEQUENTIAL_TIMEOUT = 40.0


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    config = BenchConfig(
        runs=args.runs,
        steps=args.steps,
        workers=args.workers,
        concurrency=args.concurrency,
        seq_runs=args.seq_runs,
        as_json=bool(args.json),
    )
    for name in ("runs", "steps", "workers", "concurrency", "seq_runs"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    return config


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"flowstudio: error: {exc}\n")
        return 2
    started = time.monotonic()
    try:
        sandbox = Sandbox.create(settings)
    except psycopg.Error as exc:
        log.error("cannot create the bench database: %s", exc)
        return 1
    try:
        result = run_async(lambda: bench_session(sandbox, config))
    except BenchError as exc:
        sandbox.keep_logs = True
        log.error("bench failed: %s\n%s", exc, sandbox.dump_logs())
        return 1
    finally:
        sandbox.close()
    log.info("bench finished in %.1fs", time.monotonic() - started)
    write_report(result, config.as_json)
    return 0


async def bench_session(sandbox: Sandbox, config: BenchConfig) -> dict[str, Any]:
    settings = sandbox.settings
    await apply_migrations(settings)
    log.info("measuring the PostgreSQL ceiling (%gs per connection count)", config.ceiling_seconds)
    ceiling = await measure_ceiling(settings.database_url, config.ceiling_seconds)
    sandbox.start_engine(config.workers, config.concurrency)
    pool = await open_pool(settings, min_size=STARTERS, max_size=STARTERS + 2, name="fs-bench")
    broker = RabbitBroker(settings.amqp_url, settings.queue_prefix)
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
    concurrent_ids = await driver.start_runs(config.runs, STARTERS)
    await driver.wait_all(concurrent_ids, CONCURRENT_TIMEOUT)

    log.info("sequential case: %d runs one after another", config.seq_runs)
    listen = await connect(sandbox.settings, name="fs-bench-listen")
    try:
        seq_ids = await driver.run_sequential(listen, config.seq_runs, SEQUENTIAL_TIMEOUT)
    finally:
        await listen.close()

    async with await psycopg.AsyncConnection.connect(
        sandbox.settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        concurrent = await concurrent_figures(conn, concurrent_ids, config.steps)
        sequential = await sequential_figures(conn, seq_ids)
    if concurrent.succeeded != concurrent.runs or sequential.succeeded != sequential.runs:
        raise BenchError(
            f"runs did not all succeed: concurrent {concurrent.succeeded}/{concurrent.runs}, "
            f"sequential {sequential.succeeded}/{sequential.runs}"
        )
    return build_result(config, ceiling, concurrent, sequential)
