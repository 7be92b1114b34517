"""Attacks on the code node, replayed against real workers: each must now fail inside the sandbox.

The issue-9 takeover read SECRET_KEY from the worker's `.env` and `/proc/<worker pid>/environ`, opened
a raw `_socket` connection to PostgreSQL and went on from there. Here the same code runs as a user
holding `nodes:code`, and each probe reports what it got: no secret, no host file, no other process,
no connection, no inherited descriptor; fork/thread/memory/disk/output bombs are bounded; with
`allow_network: true` the only way out is the worker's egress proxy, which refuses private targets.
Preconditions (the worker's pid exists, the files exist for the test process) are asserted so the
checks cannot pass vacuously.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Api, linear_flow
from tests.support.code_users import admin_api, granted_api
from tests.support.infra import ROOT
from tests.support.sink import Sink
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def api(running_stack: Stack, database_url: str) -> Api:
    admin = admin_api(running_stack.base_url, database_url)
    return granted_api(running_stack.base_url, database_url, admin)[0]


def run_code(api: Api, code: str, inputs: dict[str, Any] | None = None, **params: Any) -> dict:
    flow = api.create_flow(linear_flow(("py", "code", {"code": code, **params})))
    return api.wait_run(api.start_run(flow["id"], inputs or {}), timeout=90)


def result_of(api: Api, code: str, inputs: dict[str, Any] | None = None, **params: Any) -> Any:
    run = run_code(api, code, inputs, **params)
    assert run["status"] == "succeeded", run["error"]
    return run["outputs"]["result"]


def worker_pids(stack: Stack) -> list[int]:
    pids = [p.popen.pid for p in stack.procs if p.name.startswith("worker") and p.popen]
    assert pids and all(Path(f"/proc/{pid}/environ").exists() for pid in pids)
    return pids


READ_ENVIRON = """
import os
def main(input, inputs):
    got = {}
    for pid in ["self", "1", str(os.getppid())] + [str(p) for p in inputs["pids"]]:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                got[pid] = f.read().decode(errors="replace").replace("\\0", " ")
        except OSError as exc:
            got[pid] = type(exc).__name__
    return {"environ": got, "env": dict(os.environ), "ppid": os.getppid(),
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
"""


def test_code_cannot_read_the_workers_environment_or_see_its_processes(
    api: Api, running_stack: Stack
) -> None:
    pids = worker_pids(running_stack)
    secret = running_stack.env["SECRET_KEY"]
    assert secret.encode() in Path(f"/proc/{pids[0]}/environ").read_bytes()  # what was stolen
    out = result_of(api, READ_ENVIRON, {"pids": pids})
    assert set(out["env"]) <= {"PATH", "HOME", "LANG", "LC_ALL", "PWD"}, out["env"]
    for pid, text in out["environ"].items():
        assert secret not in text and "DATABASE_URL" not in text, (pid, text)
    for pid in pids:  # the workers are not in the sandbox's PID namespace
        assert out["environ"][str(pid)] in ("FileNotFoundError", "PermissionError") or pid in (1, 2)
        assert pid not in out["pids"] or pid in (1, 2)
    assert len(out["pids"]) <= 2, out["pids"]  # only the sandbox's init and the code itself


READ_FILES = """
import os
def main(input, inputs):
    got = {}
    for path in inputs["paths"]:
        try:
            got[path] = "listed %d" % len(os.listdir(path)) if os.path.isdir(path) else open(path).read()[:50]
        except OSError as exc:
            got[path] = type(exc).__name__
    return {"files": got, "cwd": os.getcwd(), "cwd_entries": os.listdir("."), "root": os.listdir("/")}
"""


def test_code_cannot_read_env_files_or_the_workers_directory(api: Api) -> None:
    visible = [ROOT / "pyproject.toml", ROOT / ".env.example", Path("/work/shared/DESIGN.md")]
    for path in visible:
        assert path.is_file()  # the test process (like the worker) can read them
    paths = [str(p) for p in visible] + [str(ROOT / ".env"), str(ROOT), "/work", "/etc", "/home"]
    out = result_of(api, READ_FILES, {"paths": paths})
    for path in paths:
        assert out["files"][path] in ("FileNotFoundError", "PermissionError"), (path, out)
    assert out["cwd"] == "/tmp" and out["cwd_entries"] == []  # a fresh, empty working directory
    assert not {"work", "etc", "home"} & set(out["root"]), out["root"]


RAW_SOCKETS = """
import _socket
def main(input, inputs):
    got = {}
    for host, port in inputs["targets"]:
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((host, port))
            got[f"{host}:{port}"] = "connected"
        except OSError as exc:
            got[f"{host}:{port}"] = f"{type(exc).__name__}: {exc}"
        finally:
            s.close()
    return got
"""


@pytest.mark.parametrize("allow_network", [False, True])
def test_raw_sockets_reach_nothing_even_with_network_allowed(
    api: Api, running_stack: Stack, allow_network: bool
) -> None:
    targets = [["127.0.0.1", 5432], ["127.0.0.1", running_stack.api_port], ["127.0.0.1", 5672]]
    out = result_of(api, RAW_SOCKETS, {"targets": targets}, allow_network=allow_network)
    for host, port in targets:
        assert "ConnectionRefusedError" in out[f"{host}:{port}"], out  # the sandbox's own loopback


def test_code_inherits_no_file_descriptor_of_the_worker(api: Api) -> None:
    code = """
import os
def main(input, inputs):
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            out[fd] = "closed"  # the listing's own directory descriptor
    return out
"""
    fds = result_of(api, code)
    assert {"0", "1", "2"} <= set(fds), fds
    extra = {fd: target for fd, target in fds.items() if fd not in ("0", "1", "2")}
    # only the directory being listed; the worker's sockets/pipes/files would show up here
    assert all(target in ("closed",) or target.startswith("/proc/") for target in extra.values())
    assert len(extra) <= 1, fds


def test_fork_and_thread_bombs_are_refused_at_once(api: Api) -> None:
    code = """
import os, subprocess, threading
def main(input, inputs):
    got = {"forked": 0}
    try:
        for _ in range(10000):
            if os.fork() == 0:
                os._exit(0)
            got["forked"] += 1
    except OSError as exc:
        got["fork"] = str(exc)
    try:
        subprocess.run(["/usr/bin/true"])
        got["spawn"] = "ran"
    except OSError as exc:
        got["spawn"] = str(exc)
    try:
        for _ in range(10000):
            threading.Thread(target=lambda: None).start()
        got["threads"] = "started"
    except RuntimeError as exc:
        got["threads"] = str(exc)
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(425, 1, None)  # io_uring_setup: EFAULT unfiltered, EPERM under the filter
    got["io_uring"] = ctypes.get_errno()
    return got
"""
    out = result_of(api, code)
    assert out["forked"] == 0 and "Operation not permitted" in out["fork"], out
    assert out["spawn"] != "ran" and out["threads"] != "started", out
    assert out["io_uring"] == 1, out  # EPERM


def test_memory_and_disk_bombs_are_bounded(api: Api) -> None:
    memory = run_code(api, "blob = bytearray(2 * 1024 ** 3)", memory_mb=128)
    assert memory["status"] == "failed" and "out of memory" in memory["error"]["message"]
    code = """
import os
def main(input, inputs):
    written, errors = 0, []
    for i in range(20):
        try:
            with open(f"/tmp/f{i}", "wb") as f:
                for _ in range(32):
                    f.write(b"x" * 1024 * 1024)
                    written += 1024 * 1024
        except OSError as exc:
            errors.append(exc.errno)
    return {"written": written, "errors": sorted(set(errors))}
"""
    out = result_of(api, code)
    # RLIMIT_FSIZE (16 MiB per file: EFBIG) and the 64 MiB tmpfs (ENOSPC) stop it
    assert out["written"] <= 64 * 1024 * 1024 + 16 * 1024 * 1024, out
    assert set(out["errors"]) <= {27, 28} and out["errors"], out


@pytest.mark.parametrize(
    "code",
    [
        "result = 'x' * (8 * 1024 * 1024)",
        "import os\nwhile True:\n    os.write(1, b'x' * 65536)",
    ],
)
def test_huge_output_is_refused_and_the_sandbox_stopped(api: Api, code: str) -> None:
    run = run_code(api, code, timeout_s=30)
    assert run["status"] == "failed", run
    assert "CODE_OUTPUT_MAX_BYTES" in run["error"]["message"], run["error"]


PROXY = """
import urllib.request
def main(input, inputs):
    got = {}
    for url in inputs["urls"]:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                got[url] = [r.status, r.read().decode()[:100]]
        except Exception as exc:
            got[url] = f"{type(exc).__name__}: {exc}"
    return got
"""


def test_network_goes_only_through_the_guarded_proxy(api: Api, sink: Sink) -> None:
    allowed = sink.url("/through-proxy")  # 127.0.0.1 is in HTTP_ALLOWED_HOSTS (conftest)
    refused = ["http://10.255.255.1/x", "http://169.254.169.254/latest", "https://192.168.77.1/"]
    out = result_of(api, PROXY, {"urls": [allowed, *refused]}, allow_network=True)
    assert out[allowed][0] == 200, out
    assert sum(1 for r in sink.requests if r["path"] == "/through-proxy") == 1
    for url in refused:
        assert "403" in out[url], (url, out[url])  # the guard refused; no connection was made
    tunnel = """
import socket
def main(input, inputs):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(b"CONNECT 127.0.0.1:5432 HTTP/1.1\\r\\nHost: 127.0.0.1:5432\\r\\n\\r\\n")
    return s.recv(200).decode(errors="replace")
"""
    # 127.0.0.1 is allow-listed, but a raw tunnel to its database port is not https
    assert result_of(api, tunnel, allow_network=True).startswith("HTTP/1.1 403")
    denied = run_code(api, PROXY, {"urls": [allowed]})  # allow_network defaults to false
    assert "network access is disabled" in str(denied["outputs"] or denied["error"])
    assert sum(1 for r in sink.requests if r["path"] == "/through-proxy") == 1
