"""Building the bubblewrap command line for one code execution, and the once-per-process probe.

`bwrap_argv(limits, script, proxy_socket)` returns `[bwrap, ..., python, -I, -c, script]`:
all namespaces unshared (user, pid, net, ipc, uts, cgroup), `--die-with-parent`, `--new-session`,
`--clearenv` and only PATH/HOME/LANG set, uid/gid 65534 inside, a size-capped tmpfs as the empty
working directory (/tmp) and a read-only root; read-only binds of /usr (plus the host's /lib*, /bin
symlinks or dirs), the Python installation (`python_install()`: `sys.base_prefix`, never a venv,
/work or the worker's cwd) and, only when the node may use the network, /etc/ssl/certs and the egress
proxy's Unix socket. Nothing else of the host is visible: no /etc, /home, /root, /work, /proc of
the host (a fresh /proc of the sandbox's own PID namespace), and a network namespace whose only
interface is its own loopback.
`sandbox_status(bwrap)` probes once (cached; a failure is retried after a minute): Linux, bubblewrap
present (CODE_SANDBOX_BWRAP, else /usr/bin etc.), and a real run of the launcher (namespaces +
seccomp) printing "ok"; it returns None or the reason the sandbox is unavailable.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SANDBOX_UID = 65534
EGRESS_DEST = "/run/flowstudio/egress.sock"  # the launcher's EGRESS_SOCKET
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Limits:
    """Per-execution limits; `memory_mb` and `timeout_s` come from the node's params."""

    memory_mb: int = 256
    timeout_s: float = 10.0
    file_bytes: int = 16 * 1024 * 1024  # RLIMIT_FSIZE: largest file the code may write
    tmpfs_bytes: int = 64 * 1024 * 1024  # size of the working directory (tmpfs, counts as RAM)
    open_files: int = 64
    tasks: int = 8  # RLIMIT_NPROC (binds where the worker is not root); seccomp fixes it anyway
    output_bytes: int = 1024 * 1024  # stdout read by the worker; more kills the sandbox

    def for_child(self) -> dict[str, int]:
        return {
            "cpu_s": int(self.timeout_s) + 2,
            "file_bytes": self.file_bytes,
            "open_files": self.open_files,
            "tasks": self.tasks,
        }


def bwrap_path(configured: str = "") -> str | None:
    """CODE_SANDBOX_BWRAP if set (must exist), else bwrap from the system directories."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


def python_install() -> tuple[str, str]:
    """(interpreter, installation dir) of the base Python (a venv's packages stay outside)."""
    prefix = os.path.realpath(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = os.path.join(prefix, "bin", version)
    interpreter = candidate if os.path.exists(candidate) else os.path.realpath(sys.executable)
    return interpreter, prefix


def unsafe_bind(prefix: str) -> str | None:
    """Why binding the Python installation would expose too much (None: it is safe)."""
    path = Path(prefix)
    cwd = Path(os.getcwd()).resolve()
    if str(path) in ("/", "/work", "/root", "/home", "/etc"):
        return f"the Python installation {prefix} is a top-level directory"
    if path == cwd or path in cwd.parents:
        return f"the Python installation {prefix} contains the worker's working directory"
    return None


def launcher_source() -> str:
    return (Path(__file__).with_name("launcher.py")).read_text(encoding="utf-8")


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for entry in SYSTEM_LINKS:
        if os.path.islink(entry):
            args += ["--symlink", os.readlink(entry), entry]
        elif os.path.isdir(entry):
            args += ["--ro-bind", entry, entry]
    return args


def bwrap_argv(
    limits: Limits, script: str, proxy_socket: str | None = None, bwrap: str = ""
) -> list[str]:
    bwrap = bwrap_path(bwrap) or "bwrap"
    interpreter, prefix = python_install()
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--disable-userns"]
    args += ["--hostname", "sandbox"]
    args += _system_binds()
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp"]
    args += ["--size", str(1024 * 1024), "--tmpfs", "/dev/shm"]
    if proxy_socket is not None:
        if os.path.isdir("/etc/ssl/certs"):
            args += ["--ro-bind", "/etc/ssl/certs", "/etc/ssl/certs"]
        args += ["--ro-bind", proxy_socket, EGRESS_DEST]
    args += ["--remount-ro", "/", "--chdir", "/tmp"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--", interpreter, "-I", "-c", script]


PROBE_SCRIPT = "JOB = sandbox_setup()\nprint('ok')\n"
PROBE_JOB = (
    b'{"memory_mb": 128, "limits": {"cpu_s": 5, "file_bytes": 1024, "open_files": 32, "tasks": 8}}'
)


RETRY_FAILED_PROBE_S = 60.0
_probed: dict[str, tuple[str | None, float]] = {}


def sandbox_status(bwrap: str = "") -> str | None:
    """None when the sandbox works here; otherwise why not. A success is cached for the process's
    life; a failure is probed again after a minute (a transient one must not disable code nodes)."""
    cached = _probed.get(bwrap)
    if cached and (cached[0] is None or time.monotonic() - cached[1] < RETRY_FAILED_PROBE_S):
        return cached[0]
    reason = _probe(bwrap)
    _probed[bwrap] = (reason, time.monotonic())
    return reason


def _probe(bwrap: str) -> str | None:
    if not sys.platform.startswith("linux"):
        return f"no sandbox on {sys.platform} (bubblewrap needs Linux)"
    if bwrap_path(bwrap) is None:
        return f"bubblewrap ({bwrap or 'bwrap'}) is not installed"
    _, prefix = python_install()
    unsafe = unsafe_bind(prefix)
    if unsafe:
        return unsafe
    script = launcher_source() + "\n" + PROBE_SCRIPT
    try:
        done = subprocess.run(
            bwrap_argv(Limits(), script, bwrap=bwrap),
            input=PROBE_JOB,
            capture_output=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
            close_fds=True,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0 or done.stdout.strip() != b"ok":
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return f"bubblewrap does not work here: {tail[0] if tail else done.returncode}"
    log.info("code sandbox: bubblewrap works (%s)", bwrap_path(bwrap))
    return None
