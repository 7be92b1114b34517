"""The bench's throwaway world: its own database, its own queue, its own engine processes.

`Sandbox.create(settings)` derives `flowstudio_bench_<random>` from DATABASE_URL, creates it through
the maintenance database (`postgres`, else the configured one) and picks a unique QUEUE_PREFIX;
`sandbox.settings` is a copy of the settings pointing at both. `start_engine(workers, concurrency)`
launches `python -m flowstudio orchestrator` and the worker subprocesses with that environment (plus
`extra_env`; logs in a temp dir), `start_api()` an API on a free loopback port (`api_url`);
`wait_registered()` polls the `processes` table until they are up; `check_alive()` raises `BenchError` if one died. `delete_queue()` removes the queue; `close()` (always called, also
on failure) stops the processes, deletes the queue if that did not happen yet and drops the database
WITH (FORCE) (retried: a shared server may be out of connections). `run_sandboxed(settings, session)` wraps one bench session in a sandbox with that
cleanup guaranteed; `per_queue_backend()` runs one per queue backend asked for. Only the derived URLs are used: all traffic is loopback or whatever the configured
PostgreSQL/RabbitMQ addresses are.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import anyio
import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from flowstudio.runtime import run_async
from flowstudio.settings import Settings

log = logging.getLogger(__name__)
MAINTENANCE_DB = "postgres"
DROP_ATTEMPTS = 5


class BenchError(Exception):
    """The benchmark could not produce figures (a process died, runs did not finish in time)."""


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_sandboxed(
    settings: Settings,
    session: Callable[[Sandbox], Awaitable[dict[str, Any]]],
    extra_env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Create a sandbox, run `session(sandbox)` under the event loop and always close the sandbox
    (also on Ctrl-C or SIGTERM); returns (exit code, result): 0, 1 (bench failed) or 130."""
    try:
        sandbox = Sandbox.create(settings)
    except psycopg.Error as exc:
        log.error("cannot create the bench database: %s", exc)
        return 1, None
    sandbox.extra_env = dict(extra_env or {})
    previous = signal.signal(signal.SIGTERM, _interrupt)  # so that `finally` cleans up
    try:
        return 0, run_async(lambda: session(sandbox))
    except BenchError as exc:
        sandbox.keep_logs = True
        log.error("bench failed: %s\n%s", exc, sandbox.dump_logs())
        return 1, None
    except psycopg.OperationalError as exc:  # e.g. the server ran out of connections
        log.error("bench failed: PostgreSQL: %s", exc)
        return 1, None
    except KeyboardInterrupt:
        log.warning("bench interrupted: stopping its processes and dropping its database")
        return 130, None
    finally:
        sandbox.close()
        signal.signal(signal.SIGTERM, previous)


def per_queue_backend(
    settings: Settings,
    choice: str | None,
    one: Callable[[Settings], tuple[int, dict[str, Any] | None]],
) -> tuple[int, dict[str, Any] | None]:
    """`one` per queue backend asked for (`--queue-backend`, default the configured one; `both`:
    RabbitMQ then the PostgreSQL queue, each in its own sandbox, side by side under `by_queue`)."""
    backends = ["rabbitmq", "postgres"] if choice == "both" else [choice or settings.queue_backend]
    results: dict[str, dict[str, Any]] = {}
    for backend in backends:
        code, result = one(msgspec.structs.replace(settings, queue_backend=backend))
        if code != 0 or result is None:
            return code, None
        results[backend] = {**result, "queue_backend": backend}
        if len(backends) > 1:
            log.info("queue backend %s done", backend)
    first = results[backends[0]]
    return 0, ({**first, "by_queue": results} if len(backends) > 1 else first)


@dataclass
class EngineProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])


def _with_dbname(database_url: str, dbname: str) -> str:
    return make_conninfo(database_url, dbname=dbname)


def _admin_execute(urls: list[str], statement: sql.Composed) -> None:
    """Run one statement that must not run inside a database it affects (CREATE/DROP DATABASE)."""
    last: Exception | None = None
    for url in urls:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(statement)
            return
        except psycopg.OperationalError as exc:  # cannot reach this maintenance db: try the next
            last = exc
    assert last is not None
    raise last


@dataclass
class Sandbox:
    base: Settings
    settings: Settings
    dbname: str
    admin_urls: list[str]
    log_dir: Path
    procs: list[EngineProcess] = field(default_factory=list)
    keep_logs: bool = False
    queue_deleted: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. HTTP_ALLOWED_HOSTS (--llm)
    api_port: int = 0

    @classmethod
    def create(cls, base: Settings) -> Sandbox:
        suffix = uuid.uuid4().hex[:10]
        dbname = f"flowstudio_bench_{suffix}"
        configured = conninfo_to_dict(base.database_url).get("dbname") or MAINTENANCE_DB
        admin = [_with_dbname(base.database_url, MAINTENANCE_DB)]
        if configured != MAINTENANCE_DB:
            admin.append(_with_dbname(base.database_url, str(configured)))
        _admin_execute(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        log.info("bench database %s created", dbname)
        settings = msgspec.structs.replace(
            base,
            database_url=_with_dbname(base.database_url, dbname),
            queue_prefix=f"fsbench_{suffix}",
        )
        log_dir = Path(tempfile.mkdtemp(prefix="flowstudio-bench-"))
        return cls(base, settings, dbname, admin, log_dir)

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
        env.update(
            {
                "DATABASE_URL": self.settings.database_url,
                "AMQP_URL": self.settings.amqp_url,
                "QUEUE_BACKEND": self.settings.queue_backend,
                "QUEUE_PREFIX": self.settings.queue_prefix,
                "LOG_LEVEL": self.settings.log_level,
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            }
        )
        return env

    def start(self, name: str, args: list[str]) -> EngineProcess:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "flowstudio", *args],
                env=self.child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the bench, which stops them in order
            )
        proc = EngineProcess(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_engine(self, workers: int, concurrency: int) -> None:
        self.start("orchestrator", ["orchestrator"])
        for i in range(workers):
            self.start(f"worker-{i}", ["worker", "--concurrency", str(concurrency)])

    def start_api(self) -> EngineProcess:
        """An API process on a free loopback port (`api_url`)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.api_port = int(s.getsockname()[1])
        return self.start("api", ["api", "--host", "127.0.0.1", "--port", str(self.api_port)])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is not None:
                self.keep_logs = True
                raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")

    async def wait_registered(
        self, conn: psycopg.AsyncConnection[Any], workers: int, within: float = 60.0
    ) -> None:
        """Until every started process has its row in `processes` (it connected to both stores)."""
        deadline = time.monotonic() + within
        while True:
            self.check_alive()
            cur = await conn.execute("SELECT kind, count(*) AS n FROM processes GROUP BY kind")
            kinds = {r["kind"]: r["n"] for r in await cur.fetchall()}
            if kinds.get("worker", 0) >= workers and kinds.get("orchestrator", 0) >= 1:
                return
            if time.monotonic() > deadline:
                self.keep_logs = True
                raise BenchError(f"engine processes not up after {within:g}s: {kinds}")
            await anyio.sleep(0.1)

    def dump_logs(self) -> str:
        return "\n".join(f"----- {p.name} ({p.log_path}) -----\n{p.tail()}" for p in self.procs)

    def stop_engine(self, timeout: float = 15.0) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %gs; killing it", proc.name, timeout)
                proc.popen.kill()
                proc.popen.wait(10)

    async def delete_queue(self, attempts: int = 3) -> None:
        """Delete the bench queue, retrying a little (the broker may be restarting); the PostgreSQL
        queue's rows go with the bench database."""
        if self.settings.queue_backend != "rabbitmq":
            self.queue_deleted = True
            return
        name = f"{self.settings.queue_prefix}.steps"
        for attempt in range(1, attempts + 1):
            try:
                with anyio.fail_after(10):
                    conn = await aio_pika.connect(self.settings.amqp_url)
                    try:
                        channel = await conn.channel()
                        await channel.queue_delete(name)
                    finally:
                        await conn.close()
                self.queue_deleted = True
                return
            except Exception as exc:  # a leftover queue is harmless, but say so
                log.warning(
                    "could not delete bench queue %s (%d/%d): %s", name, attempt, attempts, exc
                )
                if attempt < attempts:
                    await anyio.sleep(2)

    def close(self) -> None:
        """Stop processes, delete the queue if the session could not, drop the database; safe to
        call twice and after any failure (an interrupt may skip the session's own cleanup)."""
        self.stop_engine()
        if not self.queue_deleted:
            anyio.run(self.delete_queue)
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(self.dbname)
        )
        for attempt in range(1, DROP_ATTEMPTS + 1):  # a shared server may be out of connections
            try:
                _admin_execute(self.admin_urls, drop)
                log.info("bench database %s dropped", self.dbname)
                break
            except psycopg.Error as exc:
                if attempt == DROP_ATTEMPTS:
                    log.error("could not drop bench database %s: %s", self.dbname, exc)
                else:
                    time.sleep(2)
        if self.keep_logs:
            log.error("engine process logs kept in %s", self.log_dir)
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)
