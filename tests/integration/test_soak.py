"""Soak: ~100 runs of mixed flows while workers, the orchestrator and the API are SIGKILLed at random.

Excluded by default (`-m soak` runs it). The seed comes from SOAK_SEED or is drawn at random and is
logged (and named in any failure) for reproduction. `Chaos`, a background thread, SIGKILLs a random
process every 0.3-1.5 s and restarts it, half the time with a random crash point armed so processes
also die exactly at their commit/publish boundaries; it restarts whatever crashed itself. Meanwhile the
test starts the runs over HTTP, retrying with the same Idempotency-Key when the API is down. At the end
every process is restarted clean, every run must reach its expected state within a bounded time, and
every run gets the crash-matrix checks (`support/durability.py`); no key may have made two runs.
It runs once per queue backend (`queue_backend`: RabbitMQ and the PostgreSQL queue).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.client import Api, linear_flow
from tests.support.durability import assert_runs_durable, wait_runs_terminal
from tests.support.flows import edge, flow_def, node
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.sink import Sink
from tests.support.stack import Proc, Stack

pytestmark = pytest.mark.soak
log = logging.getLogger(__name__)
RUNS = 100
FINISH_TIMEOUT = 150.0


def flows(sink: Sink) -> dict[str, tuple[dict[str, Any], str]]:
    """Flow kind -> (definition, expected terminal status)."""
    branch = flow_def(
        [
            node("in", "input"),
            node("c", "condition", expression="inputs.x > 5"),
            node("hi", "http_request", url=sink.url("/hi")),
            node("lo", "template", template="low"),
            node("m", "noop"),
            node("out", "output"),
        ],
        [
            edge("in", "c"),
            edge("c", "hi", "true"),
            edge("c", "lo", "false"),
            edge("hi", "m"),
            edge("lo", "m"),
            edge("m", "out"),
        ],
    )
    retry = {"retry": {"max_attempts": 5, "initial_interval": 0.2, "backoff": 1.5}}
    return {
        "http": (
            linear_flow(
                ("call", "http_request", {"url": sink.url("/h", sleep=0.3)}),
                ("t", "template", {"template": "{{ call.status }}"}),
            ),
            "succeeded",
        ),
        "delay": (
            linear_flow(
                ("d", "delay", {"seconds": "{{ inputs.s }}"}),
                ("call", "http_request", {"url": sink.url("/d")}),
            ),
            "succeeded",
        ),
        "flaky": (
            linear_flow(("f", "fail", {"succeed_on_attempt": 3}), retry={"f": retry}),
            "succeeded",
        ),
        "branch": (branch, "succeeded"),
        "slow": (
            linear_flow(
                ("call", "http_request", {"url": sink.url("/slow", sleep=1.5)}),
                ("d", "delay", {"seconds": 0.5}),
                ("f", "fail", {"succeed_on_attempt": 2}),
                retry={"f": retry},
            ),
            "succeeded",
        ),
        "doomed": (
            linear_flow(
                ("f", "fail", {"message": "always"}),
                retry={"f": {"retry": {"max_attempts": 2, "initial_interval": 0.1}}},
            ),
            "failed",
        ),
    }


def kind_of(proc: Proc) -> str:
    return proc.name.split("-", 1)[0]


class Chaos(threading.Thread):
    """Kills and restarts the stack's processes at random until `stop()`; heals them at the end."""

    def __init__(self, stack: Stack, rng: random.Random) -> None:
        super().__init__(name="soak-chaos", daemon=True)
        self.stack = stack
        self.rng = rng
        self.halt = threading.Event()
        self.kills: Counter[str] = Counter()
        self.error: BaseException | None = None

    def crash_env(self, kind: str) -> dict[str, str]:
        n = self.rng.randint(1, 20)
        spec = {
            "worker": [
                f"worker.after_commit:{n + 2}",
                f"group_commit.between_statements:{n}",
                f"group_commit.before_one_statement:{n}",
            ],
            "orchestrator": [f"orchestrator.timers_committed:{n}", f"outbox.relay_published:{n}"],
            "api": [f"api.run_committed:{n + 2}"],
        }[kind]
        armed = self.rng.random() < 0.5
        return {"FLOWSTUDIO_CRASHPOINTS": self.rng.choice(spec) if armed else ""}

    def bring_up(self, proc: Proc, env: dict[str, str]) -> None:
        proc.restart(env)
        if kind_of(proc) == "api":
            try:
                self.stack.wait_api(proc)
            except RuntimeError:  # crashed at its crash point already: healed on the next round
                log.info("api died while starting")

    def run(self) -> None:
        try:
            while not self.halt.wait(self.rng.uniform(0.3, 1.5)):
                for proc in self.stack.procs:
                    if not proc.alive:  # it crashed itself at an armed crash point
                        self.kills[f"{kind_of(proc)} (crash point)"] += 1
                        self.bring_up(proc, self.crash_env(kind_of(proc)))
                victim = self.rng.choice(self.stack.procs)
                victim.kill()
                self.kills[kind_of(victim)] += 1
                time.sleep(self.rng.uniform(0, 1.0))  # downtime
                self.bring_up(victim, self.crash_env(kind_of(victim)))
        except BaseException as exc:
            self.error = exc
            raise

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        assert not self.is_alive(), "chaos thread did not stop"
        if self.error is not None:
            raise AssertionError(f"chaos thread failed: {self.error!r}") from self.error
        for proc in self.stack.procs:  # clean restarts: no crash point armed any more
            proc.restart({"FLOWSTUDIO_CRASHPOINTS": ""})
            if kind_of(proc) == "api":
                self.stack.wait_api(proc)


def start_run_retrying(api: Api, flow_id: str, inputs: dict[str, Any], key: str) -> str:
    """POST until the API answers 202; the same key makes a retry after a crash return the same run."""
    deadline = time.monotonic() + 60
    while True:
        try:
            r = api.http.post(
                f"/api/v1/flows/{flow_id}/runs",
                json={"inputs": inputs},
                headers={"Idempotency-Key": key},
            )
            if r.status_code == 202:
                return str(r.json()["id"])
            assert r.status_code >= 500, r.text
        except httpx.TransportError:
            pass  # the API is being killed or restarted
        assert time.monotonic() < deadline, f"could not start run {key} within 60s"
        time.sleep(0.3)


def soak(
    stack: Stack,
    credentials: tuple[str, str],
    db: psycopg.Connection[Any],
    sink: Sink,
    seed: int,
    prefix: str,
) -> None:
    rng = random.Random(seed)
    stack.start_api()
    stack.start_orchestrator()
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    api = Api(stack.base_url, *credentials)
    kinds = {k: (api.create_flow(d, name=k)["id"], want) for k, (d, want) in flows(sink).items()}

    chaos = Chaos(stack, random.Random(seed + 1))
    chaos.start()
    started = time.monotonic()
    expected: dict[str, str] = {}
    picked: Counter[str] = Counter()
    try:
        for i in range(RUNS):
            kind = rng.choice(sorted(kinds))
            picked[kind] += 1
            inputs = {"i": i, "x": rng.randint(0, 10), "s": round(rng.uniform(0.2, 3.0), 2)}
            flow_id, want = kinds[kind]
            expected[start_run_retrying(api, flow_id, inputs, f"{prefix}-{i}")] = want
            time.sleep(rng.uniform(0, 0.4))
        time.sleep(8)  # more kills while the last runs are in flight
    finally:
        chaos.stop()
    log.warning(
        "soak: %d runs %s started in %.0fs; kills %s",
        RUNS,
        dict(picked),
        time.monotonic() - started,
        dict(chaos.kills),
    )

    statuses = wait_runs_terminal(db, expected, timeout=FINISH_TIMEOUT)
    log.warning(
        "soak: all terminal after %.0fs: %s", time.monotonic() - started, Counter(statuses.values())
    )
    assert_runs_durable(db, expected, sink)
    dup = db.execute(
        """SELECT idempotency_key, count(*) FROM runs WHERE idempotency_key LIKE %s
           GROUP BY 1 HAVING count(*) > 1""",
        (f"{prefix}-%",),
    ).fetchall()
    assert not dup and len(expected) == RUNS, f"one key, several runs: {dup}"
    assert sum(chaos.kills.values()) >= 10, f"too little chaos to mean anything: {chaos.kills}"


@pytest.fixture(params=["rabbitmq", "postgres"])
def queue_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_soak_random_kills_lose_no_run_and_commit_no_step_twice(
    stack: Stack,
    credentials: tuple[str, str],
    db: psycopg.Connection[Any],
    sink: Sink,
    queue_backend: str,
) -> None:
    seed = int(os.environ.get("SOAK_SEED") or random.randrange(2**31))
    log.warning("soak seed %d (reproduce with SOAK_SEED=%d)", seed, seed)
    try:  # the keys name the backend: with SOAK_SEED set, both backends' soaks share a database
        soak(stack, credentials, db, sink, seed, f"soak-{queue_backend}-{seed}")
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"soak failed, reproduce with SOAK_SEED={seed}: {exc}") from exc
