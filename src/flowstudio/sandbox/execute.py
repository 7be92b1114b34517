"""One sandboxed execution: the launcher + a script inside bubblewrap, with the egress proxy if asked.

`run_sandboxed(script, job, limits, allowed)` sends `job` (plus the child's limits and, when
`allowed` is not None, the forwarder's port) as JSON on stdin to `launcher.py`'s `sandbox_setup()`,
which applies limits and seccomp and leaves the job in `JOB` for `script` (the code node's RUNNER).
`allowed` is None for no network; otherwise the egress guard's HTTP_ALLOWED_HOSTS, and a per-execution
`egress_proxy` serves the sandbox for exactly as long as the child runs. bwrap itself gets only PATH;
`bwrap` is CODE_SANDBOX_BWRAP (empty: the system's).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flowstudio.sandbox.bwrap import Limits, bwrap_argv, launcher_source
from flowstudio.sandbox.proxy import egress_proxy
from flowstudio.sandbox.run import Finished, run_bounded

PROXY_PORT = 3128  # on the sandbox's own loopback (its own network namespace)
BWRAP_ENV = {"PATH": "/usr/bin:/bin"}


@functools.lru_cache(maxsize=8)
def _full_script(script: str) -> str:
    return launcher_source() + "\nJOB = sandbox_setup()\n" + script


async def run_sandboxed(
    script: str,
    job: dict[str, Any],
    limits: Limits,
    allowed: tuple[str, ...] | None,
    bwrap: str = "",
) -> Finished:
    payload = {**job, "memory_mb": limits.memory_mb, "limits": limits.for_child()}
    wall = limits.timeout_s + 1.0
    if allowed is None:
        argv = bwrap_argv(limits, _full_script(script), bwrap=bwrap)
        stdin = json.dumps(payload).encode()
        return await run_bounded(argv, stdin, wall, limits.output_bytes, BWRAP_ENV)
    async with egress_proxy(allowed) as socket_path:
        argv = bwrap_argv(limits, _full_script(script), socket_path, bwrap)
        stdin = json.dumps({**payload, "proxy_port": PROXY_PORT}).encode()
        return await run_bounded(argv, stdin, wall, limits.output_bytes, BWRAP_ENV)
