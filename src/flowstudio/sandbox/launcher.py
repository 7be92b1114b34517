"""The in-sandbox launcher: trusted code that runs first inside bubblewrap, before the user's code.

Not imported by the worker: `launcher_source()` (sandbox/bwrap.py) reads this file's text and the
sandbox runs it with `python -I -c`, followed by the code node's RUNNER. `sandbox_setup()`:
1. reads the job (JSON on stdin) once and returns it (the RUNNER reads `JOB`, not stdin);
2. sets the resource limits of this process: RLIMIT_AS (memory_mb), RLIMIT_CPU, RLIMIT_FSIZE,
   RLIMIT_NOFILE, RLIMIT_NPROC (the last only binds where the worker is not root);
3. when the job carries `proxy_port`, starts ONE forwarder thread that listens on 127.0.0.1:<port>
   of the sandbox's own network namespace and relays each connection to the worker's egress proxy
   (the Unix socket bind-mounted at `/run/flowstudio/egress.sock`), and sets HTTP(S)_PROXY;
4. installs a seccomp filter on every thread (TSYNC) that refuses clone/clone3/fork/vfork/unshare:
   from then on no process or thread can be created, so the task count is fixed (a fork or thread
   bomb fails at once); it also refuses ptrace, mount, setns, keyrings, bpf, perf, userfaultfd,
   io_uring and module loading. An unknown CPU architecture aborts: the probe then marks the
   sandbox unavailable instead of running without the filter.
Standard library only (the sandbox holds no site-packages of the project).
"""

import ctypes
import json
import os
import resource
import socket
import struct
import sys
import threading

EGRESS_SOCKET = "/run/flowstudio/egress.sock"

# per arch: (AUDIT_ARCH, seccomp's number, {syscall: errno}); errno 38 = ENOSYS (clone3: glibc then
# falls back to clone), 1 = EPERM. Besides task creation, kernel interfaces code never needs
# (ptrace, mount, setns, keyrings, bpf, perf, userfaultfd, io_uring, modules): less attack surface.
_X86_64_DENY = {435: 38, 56: 1, 57: 1, 58: 1, 272: 1, 101: 1, 165: 1, 166: 1, 155: 1, 308: 1}
_X86_64_DENY |= {248: 1, 249: 1, 250: 1, 321: 1, 298: 1, 323: 1, 425: 1, 426: 1, 427: 1}
_X86_64_DENY |= {175: 1, 176: 1, 313: 1}
_AARCH64_DENY = {435: 38, 220: 1, 97: 1, 117: 1, 40: 1, 39: 1, 41: 1, 268: 1}
_AARCH64_DENY |= {217: 1, 218: 1, 219: 1, 280: 1, 241: 1, 282: 1, 425: 1, 426: 1, 427: 1}
_AARCH64_DENY |= {105: 1, 106: 1, 273: 1}
_ARCHES = {
    "x86_64": (0xC000003E, 317, _X86_64_DENY),
    "aarch64": (0xC00000B7, 277, _AARCH64_DENY),
}


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _seccomp_program(arch: int, deny: dict[int, int]) -> bytes:
    ld_w_abs, jeq_k, jge_k, ret_k = 0x20, 0x15, 0x35, 0x06
    kill, allow, errno = 0x80000000, 0x7FFF0000, 0x00050000
    prog = [_bpf(ld_w_abs, 0, 0, 4), _bpf(jeq_k, 1, 0, arch), _bpf(ret_k, 0, 0, kill)]
    prog.append(_bpf(ld_w_abs, 0, 0, 0))
    prog += [_bpf(jge_k, 0, 1, 0x40000000), _bpf(ret_k, 0, 0, kill)]  # x32 ABI: refused
    for nr, err in deny.items():
        prog += [_bpf(jeq_k, 0, 1, nr), _bpf(ret_k, 0, 0, errno | err)]
    prog.append(_bpf(ret_k, 0, 0, allow))
    return b"".join(prog)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _no_more_tasks() -> None:
    arch, seccomp_nr, deny = _ARCHES[os.uname().machine]  # KeyError: unknown arch, fail closed
    program = _seccomp_program(arch, deny)
    buf = ctypes.create_string_buffer(program)
    fprog = _Fprog(len(program) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
    # seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog)
    if libc.syscall(seccomp_nr, 1, 1, ctypes.byref(fprog)) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


def _forwarder(server: socket.socket) -> None:
    """One thread, all connections: a select loop relaying loopback TCP <-> the egress socket."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    peers: dict[socket.socket, socket.socket] = {}
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is server:
                client, _ = server.accept()
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    upstream.connect(EGRESS_SOCKET)
                except OSError:
                    client.close()
                    continue
                peers[client], peers[upstream] = upstream, client
                sel.register(client, selectors.EVENT_READ)
                sel.register(upstream, selectors.EVENT_READ)
                continue
            assert isinstance(sock, socket.socket)
            other = peers.get(sock)
            try:
                chunk = sock.recv(65536)
                if chunk and other is not None:
                    other.sendall(chunk)
                    continue
            except OSError:
                pass
            for s in (sock, other):
                if s is not None and s in peers:
                    sel.unregister(s)
                    peers.pop(s, None)
                    s.close()


def _start_forwarder(port: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    threading.Thread(target=_forwarder, args=(server,), daemon=True).start()
    proxy = f"http://127.0.0.1:{port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = proxy


def _limit(which: int, value: int) -> None:
    resource.setrlimit(which, (value, value))


def sandbox_setup() -> dict:
    job = json.loads(sys.stdin.read())
    limits = job["limits"]
    _limit(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    _limit(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    _limit(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    _limit(resource.RLIMIT_NPROC, int(limits["tasks"]))
    if job.get("proxy_port"):
        _start_forwarder(int(job["proxy_port"]))
    _limit(resource.RLIMIT_AS, int(job["memory_mb"]) * 1024 * 1024)
    _no_more_tasks()
    return job
