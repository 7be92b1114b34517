"""The `flowstudio` command line: each command wires components; none holds logic of its own.

`main()` parses arguments (exit code 2 with a message on bad input), loads settings, sets up logging
(LOG_FORMAT text|json, `observability.logs`) and, for long-running components, tracing (on only with
OTEL_EXPORTER_OTLP_ENDPOINT),
refuses to start a long-running component (api, orchestrator, worker, up) with an unusable SECRET_KEY
(`settings.secret_key_problem`: the .env.example placeholder or < 32 chars; exit code 2), and
dispatches: migrate -> store.migrate; api -> uvicorn(create_app); orchestrator / worker -> their
`run()`; up -> migrate, then API + orchestrator + workers as child processes, restarted if they die;
user create -> store.users; prune -> store.retention; bench -> bench.run_bench (`--scale`:
bench.scale; `--vectors`: bench.vectors; `--llm`: bench.llm). With no database configured, the
embedded PostgreSQL is started first (`with_embedded_database`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from flowstudio.secretmask import install_log_filter
from flowstudio.settings import (
    EMBEDDED,
    Settings,
    SettingsError,
    env_file_warning,
    load_settings,
    secret_key_problem,
)

log = logging.getLogger("flowstudio")
UP_WORKERS = 2  # worker processes `flowstudio up` starts (and `bench --llm` like it)


def setup_logging(level: str, fmt: str = "text") -> None:
    from flowstudio.observability.logs import setup_logging as setup

    setup(level, fmt)
    install_log_filter()  # secret values of the steps in flight never reach a log line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowstudio", description="MAX Flowstudio")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply migrations/*.sql once each")
    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    sub.add_parser("orchestrator", help="run an orchestrator (timers, recovery, outbox relay)")
    w = sub.add_parser("worker", help="run a worker")
    w.add_argument(
        "--concurrency", type=int, default=None, help="steps held at once (WORKER_CONCURRENCY)"
    )
    up = sub.add_parser("up", help="migrate, then run API, orchestrator and workers")
    up.add_argument("--workers", type=int, default=UP_WORKERS)
    up.add_argument(
        "--concurrency", type=int, default=None, help="per worker (WORKER_CONCURRENCY, 256)"
    )
    user = sub.add_parser("user", help="manage users")
    usub = user.add_subparsers(dest="user_command", required=True)
    uc = usub.add_parser("create", help="create (or update) a user")
    uc.add_argument("--email", required=True)
    uc.add_argument("--password", required=True)
    uc.add_argument("--role", action="append", choices=["admin", "editor", "runner", "viewer"])
    uc.add_argument("--name", default="")
    pr = sub.add_parser("prune", help="delete finished, unpinned runs older than an age")
    pr.add_argument("--older-than", required=True, help="age, e.g. 30d, 12h, 90m")
    pr.add_argument("--batch-size", type=int, default=500)
    b = sub.add_parser("bench", help="engine benchmark")
    b.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    b.add_argument("--runs", type=int, default=200)
    b.add_argument("--steps", type=int, default=10)
    # the engine bench: 2 workers x 8 slots (no-op steps are CPU-bound; --workers/--concurrency vary it);
    # --llm: 2 workers x WORKER_CONCURRENCY, as `flowstudio up` starts them
    b.add_argument("--workers", type=int, default=UP_WORKERS)
    b.add_argument("--concurrency", type=int, default=None, help="per worker (8; --llm: 256)")
    b.add_argument("--seq-runs", type=int, default=30)
    b.add_argument(
        "--ceiling-seconds",
        type=float,
        default=3.0,
        help="seconds per sample of the PostgreSQL ceiling (6 samples; shorter ones swing more)",
    )
    b.add_argument(
        "--queue-backend",
        choices=["rabbitmq", "postgres", "both"],
        help="queue(s) to measure (default: QUEUE_BACKEND; both: side by side)",
    )
    # --llm: a batch of input -> llm_chat -> output against a capped fake provider (bench/llm.py)
    b.add_argument("--llm", action="store_true", help="LLM batch against a capped fake provider")
    b.add_argument("--items", type=int, default=1000, help="--llm: batch items")
    b.add_argument("--latency", type=float, default=0.5, help="--llm: provider seconds per call")
    b.add_argument("--cap", type=int, default=64, help="--llm: provider calls in flight (429 past)")
    b.add_argument("--rpm", type=int, default=0, help="--llm: provider requests/minute (0: none)")
    b.add_argument("--retry-after", type=float, default=1.0, help="--llm: the 429s' Retry-After")
    b.add_argument(
        "--batches",
        type=int,
        default=1,
        help="--llm: batches one after another on the same stack and provider (its learned limit "
        "carries over); each is reported",
    )
    b.add_argument("--vectors", action="store_true", help="vector store: pgvector vs exact")
    b.add_argument("--chunks", type=int, default=100_000, help="--vectors: chunks to seed")
    b.add_argument("--dims", type=int, default=128, help="--vectors: dimensions")
    b.add_argument("--queries", type=int, default=50, help="--vectors: searches measured")
    # --scale: the dashboard queries on a seeded big database (bench/scale.py)
    b.add_argument(
        "--scale", action="store_true", help="measure lists/details/ops on a big database"
    )
    b.add_argument("--scale-runs", type=int, default=100_000)
    b.add_argument("--scale-events", type=int, default=3, help="event rows per step")
    b.add_argument(
        "--scale-days", type=float, default=7.0, help="history spread over this many days"
    )
    b.add_argument("--scale-reps", type=int, default=40)
    return p


def cmd_migrate(settings: Settings) -> int:
    from flowstudio.runtime import run_async
    from flowstudio.store.migrate import apply_migrations

    applied = run_async(lambda: apply_migrations(settings))
    log.info("migrations applied: %s", ", ".join(applied) if applied else "none (up to date)")
    return 0


def cmd_api(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from flowstudio.api.app import create_app

    # LOG_FORMAT=json: uvicorn's loggers propagate to our JSON handler instead of its own
    extra: dict[str, Any] = {"log_config": None} if settings.log_format == "json" else {}
    if sys.platform != "win32":  # EVENT_LOOP as resolved (uvicorn's "auto" takes uvloop whenever
        extra["loop"] = settings.event_loop  # installed); Windows keeps uvicorn's choice
    log.info("event loop: %s", extra.get("loop", "asyncio"))
    uvicorn.run(
        create_app(settings),
        host=host or settings.backend_host,
        port=port or settings.backend_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        proxy_headers=True,  # X-Forwarded-For/-Proto, honoured only from these peers:
        forwarded_allow_ips=settings.forwarded_allow_ips,
        **extra,
    )
    return 0


def cmd_user_create(settings: Settings, args: argparse.Namespace) -> int:
    from flowstudio.runtime import run_async
    from flowstudio.store.db import connect
    from flowstudio.store.users import create_user

    if "@" not in args.email or len(args.password) < 8:
        sys.stderr.write("flowstudio: error: need a valid --email and a --password of 8+ chars\n")
        return 2

    async def create() -> None:
        conn = await connect(settings)
        try:
            row = await create_user(
                conn,
                email=args.email,
                password=args.password,
                roles=args.role or ["editor"],
                name=args.name,
            )
        finally:
            await conn.close()
        log.info("user %s (%s) roles=%s", row["email"], row["id"], row["roles"])

    run_async(create)
    return 0


def cmd_up(settings: Settings, workers: int, concurrency: int) -> int:
    """Supervise the components as child processes; a child that dies is restarted."""
    if cmd_migrate(settings) != 0:
        return 1
    from flowstudio.bootstrap import ensure_first_admin
    from flowstudio.runtime import run_async

    try:
        run_async(lambda: ensure_first_admin(settings))
    except ValueError as exc:
        sys.stderr.write(f"flowstudio: error: {exc}\n")
        return 2
    # a frozen (PyInstaller) flowstudio is its own interpreter: its children run the same binary
    exe = (
        [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "flowstudio"]
    )
    specs = {"api": [*exe, "api"], "orchestrator": [*exe, "orchestrator"]}
    for i in range(workers):
        specs[f"worker-{i}"] = [*exe, "worker", "--concurrency", str(concurrency)]
    # the API's /metrics covers every child (database-backed); a METRICS_PORT meant for a process
    # started alone would make the children collide on it
    env = {k: v for k, v in os.environ.items() if k != "METRICS_PORT"}
    children = {name: subprocess.Popen(cmd, env=env) for name, cmd in specs.items()}
    log.info(
        "flowstudio up: API on http://%s:%d (%s)",
        settings.backend_host,
        settings.backend_port,
        ", ".join(children),
    )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        time.sleep(0.5)
        for name, proc in list(children.items()):
            if proc.poll() is not None and not stopping:
                log.warning("%s exited with %s; restarting", name, proc.returncode)
                children[name] = subprocess.Popen(specs[name], env=env)
    for proc in children.values():
        proc.terminate()
    for proc in children.values():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


def cmd_prune(settings: Settings, older_than: str, batch_size: int) -> int:
    from flowstudio.runtime import run_async
    from flowstudio.store.db import connect
    from flowstudio.store.retention import parse_age, prune_runs

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        sys.stderr.write(f"flowstudio: error: --older-than: {exc}\n")
        return 2
    if batch_size < 1:
        sys.stderr.write("flowstudio: error: --batch-size must be >= 1\n")
        return 2

    async def prune() -> dict[str, int]:
        conn = await connect(settings, name="flowstudio-prune")
        try:
            return await prune_runs(conn, age, batch_size=batch_size)
        finally:
            await conn.close()

    counts = run_async(prune)
    log.info("prune: deleted %d runs and %d batches", counts["runs"], counts["batches"])
    return 0


def with_embedded_database(settings: Settings) -> Settings:
    """Start (or attach to) the embedded PostgreSQL; children started by `up` inherit its URL."""
    from flowstudio.home import start_embedded_postgres

    url = start_embedded_postgres()
    os.environ["DATABASE_URL"] = url
    return msgspec.structs.replace(settings, database_url=url)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(os.environ.get("FLOWSTUDIO_ENV_FILE", ".env"))
    except SettingsError as exc:
        sys.stderr.write(f"flowstudio: error: {exc}\n")
        return 2
    setup_logging(settings.log_level, settings.log_format)
    if args.command in ("api", "orchestrator", "worker", "up"):
        problem = secret_key_problem(settings.secret_key)
        if problem:
            sys.stderr.write(
                f"flowstudio: error: {problem} (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')\n"
            )
            return 2
    if settings.database_url == EMBEDDED:
        settings = with_embedded_database(settings)
    if args.command in ("api", "orchestrator", "worker"):
        from flowstudio.observability.tracing import init_tracing

        init_tracing(settings, args.command)
    from flowstudio.runtime import run_async

    match args.command:
        case "migrate":
            return cmd_migrate(settings)
        case "api":
            return cmd_api(settings, args.host, args.port)
        case "orchestrator":
            from flowstudio.engine.orchestrator import Orchestrator

            run_async(Orchestrator(settings).run, settings.event_loop)
            return 0
        case "worker":
            if args.concurrency is None:
                args.concurrency = settings.worker_concurrency
            if args.concurrency < 1:
                sys.stderr.write("flowstudio: error: --concurrency must be >= 1\n")
                return 2
            from flowstudio.sandbox.policy import mode_of, refusal
            from flowstudio.worker.worker import Worker

            unsafe = env_file_warning(os.environ.get("FLOWSTUDIO_ENV_FILE", ".env"))
            if unsafe:
                log.warning("%s", unsafe)
            mode = mode_of(settings)
            log.info("code node: CODE_NODE=%s, %s", mode, refusal(settings) or "available")
            run_async(
                Worker(settings, args.concurrency, settings.worker_grace_seconds).run,
                settings.event_loop,
            )
            return 0
        case "up":
            concurrency = args.concurrency or settings.worker_concurrency
            return cmd_up(settings, args.workers, concurrency)
        case "user":
            return cmd_user_create(settings, args)
        case "prune":
            return cmd_prune(settings, args.older_than, args.batch_size)
        case "bench":
            if args.scale:
                from flowstudio.bench.scale import run_scale_bench

                return run_scale_bench(settings, args)
            from flowstudio.bench import run_bench

            if args.llm:
                from flowstudio.bench.llm import run_llm_bench

                return run_llm_bench(settings, args)
            if args.vectors:
                from flowstudio.bench.vectors import run_vector_bench

                return run_vector_bench(settings, args.chunks, args.dims, args.queries, args.json)

            return run_bench(settings, args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
