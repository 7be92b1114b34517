"""`code`: user Python run in a separate, short-lived process with a time and a memory limit.

`run_code` starts `sys.executable -I -c RUNNER` (from a thread, portable) (isolated mode; an environment without the worker's
variables, so no DATABASE_URL or SECRET_KEY), writes `{code, input, inputs}` as JSON to its stdin and
reads one JSON line back, killing the process when `timeout_s` passes or the step is cancelled.
The RUNNER (in the child): sets RLIMIT_AS / RLIMIT_CPU (POSIX only: Windows has no setrlimit, so
there only the wall-clock timeout applies), replaces `socket` connect/resolve functions with ones
that raise unless `allow_network` (best effort against accidents, NOT a security boundary: code can
undo it, use ctypes or spawn processes; run untrusted code in a container or VM), compiles the code
(a syntax error comes back with its line), runs it with `input` and `inputs` defined, and returns
`result` (or `main(input, inputs)`'s return value) encoded as JSON, with the captured stdout.
`_outcome` turns the child's report (or its death) into `Done` or a non-retryable `NodeError`.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

import anyio
import msgspec

from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeSpec, register

RUNNER = r"""
import io, json, sys, traceback
report = sys.stdout
job = json.loads(sys.stdin.read())
try:
    import resource
    mem = job["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(job["timeout_s"]) + 3  # a backstop: the parent's wall-clock limit fires first
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
except (ImportError, ValueError, OSError):
    pass  # Windows: no resource module; the parent's wall-clock timeout still applies
if not job["allow_network"]:
    import socket
    def _no_network(*args, **kwargs):
        raise PermissionError("network access is disabled in the code node (allow_network: false)")
    for _name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex",
                  "create_server", "socketpair", "fromfd"):
        setattr(socket, _name, _no_network)
    class _NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            _no_network()
    socket.socket = _NoSocket
def send(payload):
    try:
        report.write(json.dumps(payload, allow_nan=False) + "\n")
    except (TypeError, ValueError) as exc:
        report.write(json.dumps({"error": "not_json", "message": str(exc)}) + "\n")
    report.flush()
try:
    compiled = compile(job["code"], "<code>", "exec")
except SyntaxError as exc:
    send({"error": "syntax", "message": exc.msg, "line": exc.lineno, "offset": exc.offset})
    sys.exit(0)
captured = io.StringIO()
sys.stdout = captured
scope = {"__name__": "__flowstudio_code__", "input": job["input"], "inputs": job["inputs"]}
try:
    exec(compiled, scope)
    if callable(scope.get("main")):
        result = scope["main"](job["input"], job["inputs"])
    else:
        result = scope.get("result")
except MemoryError:
    send({"error": "memory", "message": "memory limit exceeded"})
    sys.exit(0)
except BaseException as exc:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<code>"]
    tail = "".join(traceback.format_list(frames[-5:]))
    send({"error": "exception", "type": type(exc).__name__, "message": str(exc)[:2000],
          "line": frames[-1].lineno if frames else None, "traceback": tail})
    sys.exit(0)
sys.stdout = report
send({"result": result, "stdout": captured.getvalue()[-10000:]})
"""


class CodeParams(msgspec.Struct, kw_only=True):
    code: str  # sets `result`, or defines main(input, inputs); `input`/`inputs` are predefined
    timeout_s: float = 10.0
    memory_mb: int = 256  # address-space limit (POSIX)
    allow_network: bool = False


def child_env() -> dict[str, str]:
    """Only what Python needs to start: the worker's secrets stay out of the child."""
    keep = ("PATH", "SYSTEMROOT", "TEMP", "TMP", "LANG", "LC_ALL", "HOME")
    return {k: os.environ[k] for k in keep if k in os.environ} | {"PYTHONIOENCODING": "utf-8"}


def _outcome(report: dict[str, Any], stderr: bytes) -> Done:
    match report.get("error"):
        case None:
            return Done({"result": report.get("result"), "stdout": report.get("stdout", "")})
        case "syntax":
            msg = f"syntax error at line {report.get('line')}: {report.get('message')}"
        case "not_json":
            msg = f"the result is not JSON-serialisable: {report.get('message')}"
        case "memory":
            msg = "the code ran out of memory (memory_mb limit)"
        case _:
            where = f" at line {report['line']}" if report.get("line") else ""
            msg = f"{report.get('type')}{where}: {report.get('message')}"
    raise NodeError(msg, retryable=False, details={k: v for k, v in report.items() if k != "error"})


async def run_code(ctx: NodeContext, params: CodeParams) -> Done:
    if not 0 < params.timeout_s <= 3600 or not 16 <= params.memory_mb <= 65536:
        raise NodeError("need 0 < timeout_s <= 3600 and 16 <= memory_mb <= 65536", retryable=False)
    job = {
        "code": params.code,
        "input": ctx.input,
        "inputs": dict(ctx.inputs),
        "timeout_s": params.timeout_s,
        "memory_mb": params.memory_mb,
        "allow_network": params.allow_network,
    }
    # a thread, not asyncio subprocesses: those need the proactor loop on Windows, where
    # psycopg needs the selector loop
    proc = subprocess.Popen(  # noqa: ASYNC220 -- waited on in a thread, see above
        [sys.executable, "-I", "-c", RUNNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        out, err = await anyio.to_thread.run_sync(
            functools.partial(proc.communicate, json.dumps(job).encode(), params.timeout_s + 1.0),
            abandon_on_cancel=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"the code ran longer than {params.timeout_s:g}s", retryable=False) from exc
    finally:
        if proc.poll() is None:  # timed out, or the step was cancelled
            proc.kill()
            proc.wait()
    line = out.decode(errors="replace").strip().splitlines()[-1:] if out else []
    if not line:
        code = proc.returncode
        reason = "the CPU or memory limit" if code and code < 0 else f"exit code {code}"
        tail = err.decode(errors="replace")[-500:]
        raise NodeError(
            f"the code process died ({reason})", retryable=False, details={"stderr": tail}
        )
    try:
        report = json.loads(line[0])
    except ValueError as exc:
        raise NodeError("the code process sent an unreadable report", retryable=False) from exc
    return _outcome(report, err)


register(
    NodeSpec(
        "code",
        "Python code",
        "code",
        "Runs Python in a separate process with time and memory limits and no network by "
        "default; `result` (JSON) is the output.",
        CodeParams,
        run_code,
        default_timeout_s=3700.0,
    )
)
