"""`flowstudio bench --llm`: a batch of `input -> llm_chat -> output` against a capped fake provider.

`run_llm_bench(settings, args)` checks the options, then per queue backend (`--queue-backend`,
default the configured one; `both` side by side: `sandbox.per_queue_backend`) runs `llm_session()`
in a `Sandbox` of its own (own database + queue, always cleaned up: `sandbox.run_sandboxed`), with
loopback added to HTTP_ALLOWED_HOSTS. `llm_session()` migrates, starts the `FakeProvider` (latency,
cap, rpm; a thread of this process), then the stack as `flowstudio up` starts it with its defaults (an
API, an orchestrator and 2 workers of WORKER_CONCURRENCY slots; `--workers`/`--concurrency` vary it),
creates a user, logs in, creates the flow and uploads the `--items` batch through the real HTTP API,
polls the batch while sampling the API's and the workers' RSS (`RssSampler`) and metering each role's
CPU (`CpuByRole`), reads the results and checks every item's answer and order. The figures (`llm_report.build_llm_result`) come from the
batch's own timestamps (created_at -> finished_at) and the provider's counters. `--batches N` runs
N such batches one after another on the same stack and provider (fresh provider counters each; the
provider's learned limit in the database carries over, as for a user's next batch).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import time
from datetime import datetime
from typing import Any

import anyio
import httpx
import msgspec
import psutil
import psycopg
from psycopg.rows import dict_row

from flowstudio.bench.cpu import CpuMeter, cpu_seconds
from flowstudio.bench.fakeprovider import MODEL, FakeProvider, answer_for
from flowstudio.bench.llm_report import Checked, LlmConfig, build_llm_result, write_llm_report
from flowstudio.bench.sandbox import BenchError, Sandbox, per_queue_backend, run_sandboxed
from flowstudio.settings import Settings
from flowstudio.store.db import connect
from flowstudio.store.migrate import apply_migrations

log = logging.getLogger(__name__)
POLL = 0.5  # batch status reads: each one is a count query in the API
TERMINAL = ("succeeded", "failed", "cancelled")
USER_EMAIL = "bench-llm@flowstudio.invalid"


def config_from_args(args: argparse.Namespace, settings: Settings) -> LlmConfig:
    fields = {
        **vars(args),  # the bench options carry LlmConfig's field names
        "concurrency": args.concurrency or settings.worker_concurrency,
        "as_json": bool(args.json),
    }
    config = msgspec.convert(fields, LlmConfig)
    for name in ("items", "cap", "workers", "concurrency", "batches"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name} must be >= 1")
    if not 0 < config.latency <= 60:
        raise ValueError("--latency must be > 0 and <= 60 seconds")
    if config.rpm < 0 or not 0 <= config.retry_after <= 60:
        raise ValueError("--rpm must be >= 0 and --retry-after between 0 and 60")
    return config


def flow_definition(base_url: str) -> dict[str, Any]:
    params = {"model": MODEL, "base_url": base_url, "prompt": "{{ inputs.text }}"}
    nodes = [
        {"id": "in", "type": "input", "position": {"x": 0, "y": 0}, "data": {"params": {}}},
        {
            "id": "llm",
            "type": "llm_chat",
            "position": {"x": 250, "y": 0},
            "data": {"params": params},
        },
        {"id": "out", "type": "output", "position": {"x": 500, "y": 0}, "data": {"params": {}}},
    ]
    edges = [
        {"id": "e1", "source": "in", "sourceHandle": "out", "target": "llm", "targetHandle": "in"},
        {"id": "e2", "source": "llm", "sourceHandle": "out", "target": "out", "targetHandle": "in"},
    ]
    return {"nodes": nodes, "edges": edges}


def prompt_of(index: int) -> str:
    return f"item {index}"


class CpuByRole:
    """CPU seconds (user + system) used by each role's processes and by the bench database's
    PostgreSQL backends between `start()` and `stop()`: what an item costs, whatever the machine's
    load does to the wall time."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.roles: dict[str, list[int]] = {}
        for proc in sandbox.procs:
            self.roles.setdefault(proc.name.split("-")[0], []).append(proc.popen.pid)
        self.roles["bench"] = [os.getpid()]  # the driver and the fake provider's thread
        self.postgres = CpuMeter([], sandbox.dbname)
        self.before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {
            role: sum(cpu_seconds(pid) or 0.0 for pid in pids) for role, pids in self.roles.items()
        }

    async def start(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.before = self._now()
        await self.postgres.start(conn)

    async def stop(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, float | None]:
        after = self._now()
        used: dict[str, float | None] = {r: after[r] - self.before.get(r, 0.0) for r in after}
        used["postgres"] = (await self.postgres.stop(conn)).postgres_s
        return used


class RssSampler:
    """RSS of the API and of each worker, sampled on every poll: peaks and checkpoints."""

    def __init__(self, api_pid: int, worker_pids: list[int]) -> None:
        self.api = psutil.Process(api_pid)
        self.workers = [psutil.Process(pid) for pid in worker_pids]
        self.api_peak = 0
        self.worker_peak = 0
        self.at_done: dict[str, dict[str, Any]] = {}

    def fresh(self) -> RssSampler:
        """A sampler of the same processes with its peaks and checkpoints reset (the next batch)."""
        return RssSampler(self.api.pid, [w.pid for w in self.workers])

    def sample(self, done: int, checkpoints: list[int]) -> None:
        try:
            api = self.api.memory_info().rss
            workers = [w.memory_info().rss for w in self.workers]
        except psutil.Error as exc:  # a process died: check_alive() says which
            log.warning("RSS sample failed: %s", exc)
            return
        self.api_peak = max(self.api_peak, api)
        self.worker_peak = max(self.worker_peak, *workers)
        for mark in checkpoints:
            if done >= mark and str(mark) not in self.at_done:
                self.at_done[str(mark)] = {
                    "done": done,
                    "api_rss_mb": _mb(api),
                    "worker_rss_mb": [_mb(w) for w in workers],
                }


def _mb(n: int) -> float:
    return round(n / 2**20, 1)


def run_llm_bench(settings: Settings, args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args, settings)
    except ValueError as exc:
        sys.stderr.write(f"flowstudio: error: {exc}\n")
        return 2

    def one(settings: Settings) -> tuple[int, dict[str, Any] | None]:
        allowed = ",".join(dict.fromkeys([*settings.http_allowed_hosts, "127.0.0.1"]))
        return run_sandboxed(
            settings,
            lambda sandbox: llm_session(sandbox, config),
            extra_env={"HTTP_ALLOWED_HOSTS": allowed},  # the fake provider is on loopback
        )

    code, summary = per_queue_backend(settings, getattr(args, "queue_backend", None), one)
    if summary is None:
        return code
    write_llm_report(summary, config.as_json)
    return 0


async def llm_session(sandbox: Sandbox, config: LlmConfig) -> dict[str, Any]:
    settings = sandbox.settings
    await apply_migrations(settings)
    password = secrets.token_urlsafe(18)
    conn = await connect(settings, name="fs-bench-llm")
    try:
        from flowstudio.store.users import create_user

        await create_user(conn, email=USER_EMAIL, password=password, roles=["editor"])
    finally:
        await conn.close()
    provider = FakeProvider(
        latency=config.latency, cap=config.cap, rpm=config.rpm, retry_after=config.retry_after
    )
    with provider.serve():
        api = sandbox.start_api()
        sandbox.start_engine(config.workers, config.concurrency)
        try:
            async with httpx.AsyncClient(base_url=sandbox.api_url, timeout=60) as http:
                await wait_api(sandbox, http)
                async with await psycopg.AsyncConnection.connect(
                    settings.database_url, autocommit=True, row_factory=dict_row
                ) as db:
                    await sandbox.wait_registered(db, config.workers)
                    workers = [p.popen.pid for p in sandbox.procs if p.name.startswith("worker")]
                    rss = RssSampler(api.popen.pid, workers)
                    return await drive(sandbox, config, http, db, password, provider, rss)
        finally:
            with anyio.CancelScope(shield=True):
                sandbox.stop_engine()
                await sandbox.delete_queue()


async def wait_api(sandbox: Sandbox, http: httpx.AsyncClient, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while True:
        sandbox.check_alive()
        try:
            if (await http.get("/health/live", timeout=2)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"the API did not answer /health/live in {within:g}s")
        await anyio.sleep(0.1)


async def _ok(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 300:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return dict(response.json())


async def drive(
    sandbox: Sandbox,
    config: LlmConfig,
    http: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    password: str,
    provider: FakeProvider,
    rss: RssSampler,
) -> dict[str, Any]:
    login = await _ok(
        await http.post("/api/auth/login", json={"email": USER_EMAIL, "password": password}),
        "login",
    )
    http.headers["Authorization"] = f"Bearer {login['access_token']}"
    http.cookies.clear()  # the bearer token alone: no session cookie, no CSRF check
    flow = await _ok(
        await http.post(
            "/api/v1/flows",
            json={"name": "bench llm", "definition": flow_definition(provider.base_url)},
        ),
        "create flow",
    )
    results = []
    for number in range(config.batches):
        if number:  # the same provider (its learned limit is in the database), fresh counters
            provider.reset_stats()
            rss = rss.fresh()
        results.append(await one_batch(sandbox, config, http, db, flow["id"], provider, rss))
    first = results[0]
    if results[1:]:
        first["later_batches"] = results[1:]
    return first


async def one_batch(
    sandbox: Sandbox,
    config: LlmConfig,
    http: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    flow_id: str,
    provider: FakeProvider,
    rss: RssSampler,
) -> dict[str, Any]:
    body = b"".join(
        msgspec.json.encode({"text": prompt_of(i)}) + b"\n" for i in range(config.items)
    )
    log.info("LLM batch: %d items, latency %gs, cap %d", config.items, config.latency, config.cap)
    rss.sample(0, [])
    cpu = CpuByRole(sandbox)
    await cpu.start(db)
    started = time.monotonic()
    created = await _ok(
        await http.post(
            f"/api/v1/flows/{flow_id}/batches",
            content=body,
            headers={"content-type": "application/x-ndjson"},
            timeout=600,
        ),
        "create batch",
    )
    batch = await wait_batch(sandbox, config, http, created["id"], rss)
    client_wall = time.monotonic() - started
    cpu_used = await cpu.stop(db)
    if batch["status"] != "succeeded":
        raise BenchError(f"batch ended {batch['status']}: {batch['counts']} {batch['error']}")
    checked = await check_results(http, created["id"], config.items)
    wall = (_when(batch["finished_at"]) - _when(batch["created_at"])).total_seconds()
    return build_llm_result(
        config,
        wall_s=wall,
        client_wall_s=client_wall,
        first_call_s=(
            None if provider.stats.first_call is None else provider.stats.first_call - started
        ),
        checked=checked,
        provider=provider.stats.snapshot(),
        api_rss_peak=rss.api_peak,
        worker_rss_peak=rss.worker_peak,
        rss_at_done=rss.at_done,
        cpu_s=cpu_used,
    )


def _when(value: str) -> datetime:
    return msgspec.convert(value, datetime)


async def wait_batch(
    sandbox: Sandbox,
    config: LlmConfig,
    http: httpx.AsyncClient,
    batch_id: str,
    rss: RssSampler,
) -> dict[str, Any]:
    checkpoints = sorted({max(1, config.items // 10), max(1, config.items // 2), config.items})
    ideal = config.items * config.latency / config.cap
    within = max(120.0, 20 * ideal + 60)
    deadline = time.monotonic() + within
    while True:
        batch = await _ok(await http.get(f"/api/v1/batches/{batch_id}"), "batch status")
        counts = batch["counts"]
        rss.sample(sum(counts[s] for s in TERMINAL), checkpoints)
        if batch["status"] in TERMINAL:
            return batch
        sandbox.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"batch not finished in {within:g}s: {counts}")
        await anyio.sleep(POLL)


async def check_results(http: httpx.AsyncClient, batch_id: str, items: int) -> Checked:
    """Every item's answer, and whether the results came back in input order."""
    checked, indexes = Checked(), []
    async with http.stream("GET", f"/api/v1/batches/{batch_id}/results") as response:
        if response.status_code != 200:
            raise BenchError(f"results: HTTP {response.status_code}")
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            row = msgspec.json.decode(line)
            index = row["index"]
            indexes.append(index)
            text = (row.get("outputs") or {}).get("text")
            if row["status"] != "succeeded":
                checked.failed += 1
                if checked.first_error is None:
                    checked.first_error = str((row.get("error") or {}).get("message", ""))[:300]
            elif text == answer_for(prompt_of(index)):
                checked.right += 1
    checked.in_order = indexes == list(range(items))
    return checked
