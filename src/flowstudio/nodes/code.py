"""`code`: user Python run in the OS sandbox (flowstudio/sandbox), with time, memory and output limits.

`run_code` first asks the policy (sandbox/policy.py): CODE_NODE=off, or `sandbox` where bubblewrap
is unavailable, fails the step non-retryably with the reason; so does an author of the run's flow
version who no longer holds `nodes:code`. Then, by CODE_NODE:
- `sandbox` (default): `run_sandboxed` runs the launcher + RUNNER in bubblewrap (no environment, no
  host files, own PID and network namespaces, rlimits, no new processes/threads); with
  `allow_network: true` the only way out is the worker's egress proxy, which applies the guard.
- `trusted` (administrator's opt-in, NOT a boundary): `sys.executable -I -c RUNNER` with an
  environment without the worker's variables, as before the sandbox existed.
Both write `{code, input, inputs, ...}` as JSON on stdin and read one JSON line back through
`run_bounded` (wall clock, stdout capped at CODE_OUTPUT_MAX_BYTES, the child killed past either).
The RUNNER (in the child): sets RLIMIT_AS / RLIMIT_CPU (POSIX), replaces `socket` functions with
ones that raise unless `allow_network` (a clear message for accidents; the boundary is the
sandbox's network namespace), compiles the code (a syntax error comes back with its line), runs it
with `input` and `inputs` defined, and returns `result` (or `main(input, inputs)`'s return value)
encoded as JSON, with the captured stdout. `_outcome`/`_finish` turn the child's report (or its
death, timeout or overflow) into `Done` or a non-retryable `NodeError`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import msgspec

from flowstudio.auth.roles import CODE_PERMISSION
from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeSpec, register
from flowstudio.sandbox.bwrap import Limits
from flowstudio.sandbox.execute import run_sandboxed
from flowstudio.sandbox.policy import author_may_run_code, mode_of, refusal_async
from flowstudio.sandbox.run import Finished, run_bounded

RUNNER = r"""
import io, json, sys, traceback
report = sys.stdout
job = JOB if "JOB" in globals() else json.loads(sys.stdin.read())
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


def _has_nul(value: Any) -> bool:
    """PostgreSQL's jsonb cannot store U+0000: such a result would fail every commit of the step."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            return True
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return False


def _outcome(report: dict[str, Any], stderr: bytes) -> Done:
    if _has_nul(report):
        raise NodeError(
            "the result contains NUL characters (\\u0000), which cannot be stored", retryable=False
        )
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


def _finish(done: Finished, params: CodeParams, cap: int) -> Done:
    if done.overflow:
        raise NodeError(
            f"the code's output passed {cap} bytes (CODE_OUTPUT_MAX_BYTES); it was stopped",
            retryable=False,
        )
    if done.timed_out:
        raise NodeError(f"the code ran longer than {params.timeout_s:g}s", retryable=False)
    out = done.stdout
    line = out.decode(errors="replace").strip().splitlines()[-1:] if out else []
    if not line:
        code = done.returncode
        reason = "the CPU or memory limit" if code and code < 0 else f"exit code {code}"
        tail = done.stderr.decode(errors="replace")[-500:]
        raise NodeError(
            f"the code process died ({reason})", retryable=False, details={"stderr": tail}
        )
    try:
        report = json.loads(line[0])
    except ValueError as exc:
        raise NodeError("the code process sent an unreadable report", retryable=False) from exc
    return _outcome(report, done.stderr)


async def run_code(ctx: NodeContext, params: CodeParams) -> Done:
    if not 0 < params.timeout_s <= 3600 or not 16 <= params.memory_mb <= 65536:
        raise NodeError("need 0 < timeout_s <= 3600 and 16 <= memory_mb <= 65536", retryable=False)
    mode = mode_of(ctx.settings)
    refused = await refusal_async(ctx.settings)
    if refused is not None:
        raise NodeError(refused, retryable=False)
    if not await author_may_run_code(ctx.db, ctx.run_id, ctx.node_id):
        raise NodeError(
            f"the code node needs the {CODE_PERMISSION} permission, which the author of this "
            "flow version (or of the run's tweaks of this node) does not hold",
            retryable=False,
        )
    job = {
        "code": params.code,
        "input": ctx.input,
        "inputs": dict(ctx.inputs),
        "timeout_s": params.timeout_s,
        "memory_mb": params.memory_mb,
        "allow_network": params.allow_network,
    }
    cap = int(getattr(ctx.settings, "code_output_max_bytes", 1024 * 1024))
    if mode == "trusted":  # an administrator's opt-in: NOT a boundary (README, Security model)
        argv = [sys.executable, "-I", "-c", RUNNER]
        stdin = json.dumps(job).encode()
        done = await run_bounded(argv, stdin, params.timeout_s + 1.0, cap, child_env())
    else:
        limits = Limits(memory_mb=params.memory_mb, timeout_s=params.timeout_s, output_bytes=cap)
        allowed = ctx.settings.http_allowed_hosts if params.allow_network else None
        bwrap = str(getattr(ctx.settings, "code_sandbox_bwrap", "") or "")
        done = await run_sandboxed(RUNNER, job, limits, allowed, bwrap)
    return _finish(done, params, cap)


register(
    NodeSpec(
        "code",
        "Python code",
        "code",
        "Runs Python in an OS sandbox (bubblewrap) with time, memory and output limits and no "
        "network by default; `result` (JSON) is the output. Needs the nodes:code permission.",
        CodeParams,
        run_code,
        default_timeout_s=3700.0,
    )
)
