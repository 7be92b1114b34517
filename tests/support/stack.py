"""Real `flowstudio` processes for integration tests: API, orchestrators and workers as subprocesses.

`Stack(env)` starts components with `start_api()`, `start_orchestrator()`, `start_worker()`; each
returns a `Proc` that can be `kill()`ed (SIGKILL, like kill -9) or `terminate()`d (SIGTERM) and
started again. Output goes to per-process log files under the test's tmp dir, printed on failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 -- handed to the child
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "flowstudio", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self, timeout: float = 30) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def wait_exit(self, timeout: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def restart(self, extra_env: dict[str, str] | None = None) -> Proc:
        self.kill()
        if extra_env is not None:
            self.env = {**self.env, **extra_env}
        return self.start()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])


@dataclass
class Stack:
    env: dict[str, str]
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    api_port: int = 0

    def _proc(self, name: str, args: list[str], extra_env: dict[str, str] | None) -> Proc:
        idx = sum(1 for p in self.procs if p.name.startswith(name))
        proc = Proc(
            f"{name}-{idx}", args, {**self.env, **(extra_env or {})}, self.tmp / f"{name}-{idx}.log"
        )
        self.procs.append(proc)
        return proc.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_api(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> Proc:
        if not self.api_port:
            self.api_port = free_port()
        proc = self._proc(
            "api", ["api", "--host", "127.0.0.1", "--port", str(self.api_port)], extra_env
        )
        if wait:
            self.wait_api(proc)
        return proc

    def wait_api(self, proc: Proc, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive:
                raise RuntimeError(f"API exited:\n{proc.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"API not up:\n{proc.log_tail()}")

    def start_orchestrator(self, extra_env: dict[str, str] | None = None) -> Proc:
        return self._proc("orchestrator", ["orchestrator"], extra_env)

    def start_worker(self, concurrency: int = 4, extra_env: dict[str, str] | None = None) -> Proc:
        return self._proc("worker", ["worker", "--concurrency", str(concurrency)], extra_env)

    def stop_all(self) -> None:
        for p in self.procs:
            p.kill()

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} -----\n{p.log_tail()}" for p in self.procs)
