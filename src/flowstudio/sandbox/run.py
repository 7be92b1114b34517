"""Run one child (the bubblewrap sandbox, or the trusted-mode child) with bounded output and time.

`run_bounded(argv, stdin, timeout_s, output_bytes, env)` starts the child with `close_fds=True`,
no `pass_fds` and its own session, writes `stdin` and reads stdout/stderr with one selector loop in
a worker thread (never the event loop): more than `output_bytes` on stdout, or the wall clock
passing `timeout_s`, kills the child (and so the whole sandbox: bwrap runs `--die-with-parent`).
stderr keeps only its last 64 KiB. Cancellation of the awaiting task kills the child too.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

import anyio

STDERR_TAIL = 64 * 1024


@dataclass(frozen=True)
class Finished:
    stdout: bytes
    stderr: bytes
    returncode: int | None
    timed_out: bool = False
    overflow: bool = False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The child's whole process group (the trusted child may have forked), else the child."""
    if os.name == "posix":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            pass
    proc.kill()


def _communicate(
    proc: subprocess.Popen[bytes], stdin: bytes, timeout_s: float, cap: int
) -> Finished:
    """Windows (trusted mode only): no selectors on pipes; the cap applies after the fact."""
    try:
        out, err = proc.communicate(stdin, timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        return Finished(b"", b"", proc.returncode, timed_out=True)
    return Finished(out[:cap], err[-STDERR_TAIL:], proc.returncode, overflow=len(out) > cap)


def _pump(proc: subprocess.Popen[bytes], stdin: bytes, timeout_s: float, cap: int) -> Finished:
    assert proc.stdin and proc.stdout and proc.stderr
    if os.name != "posix":
        return _communicate(proc, stdin, timeout_s, cap)
    deadline = time.monotonic() + timeout_s
    out, err = bytearray(), bytearray()
    pending = memoryview(stdin)
    sel = selectors.DefaultSelector()
    if pending:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    timed_out = overflow = False
    try:
        while len(sel.get_map()) > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(min(left, 1.0)):
                if key.fileobj is proc.stdin:
                    try:
                        sent = os.write(proc.stdin.fileno(), pending[:65536])
                    except BrokenPipeError:
                        sent = len(pending)
                    pending = pending[sent:]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                if key.fileobj is proc.stdout:
                    out += chunk
                    if len(out) > cap:
                        overflow = True
                        break
                else:
                    err += chunk
                    del err[:-STDERR_TAIL]
            if overflow:
                break
    finally:
        sel.close()
    if timed_out or overflow:
        _kill(proc)
    try:
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        code, timed_out = proc.wait(), True
    return Finished(bytes(out[:cap]), bytes(err), code, timed_out, overflow)


async def run_bounded(
    argv: list[str], stdin: bytes, timeout_s: float, output_bytes: int, env: dict[str, str]
) -> Finished:
    start_new_session = os.name == "posix"
    # a thread, not asyncio subprocesses: those need the proactor loop on Windows, where psycopg
    # needs the selector loop
    proc = subprocess.Popen(  # noqa: ASYNC220 -- driven from a thread below
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        close_fds=True,
        pass_fds=(),
        start_new_session=start_new_session,
    )
    try:
        return await anyio.to_thread.run_sync(
            _pump, proc, stdin, timeout_s, output_bytes, abandon_on_cancel=True
        )
    finally:
        if proc.poll() is None:  # the step was cancelled
            _kill(proc)
            proc.wait()
