"""The worker's spawn process pool: CPU-bound nodes run there, and its processes exit when the worker
is SIGKILLed (no orphans waiting on their queue for ever)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, os
    from flowstudio.worker.execute import ProcessPool
    from flowstudio.nodes.text import compute_hash

    async def main():
        pool = ProcessPool(2)
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(pool.get(), os.getpid) for _ in range(4)]
        pids = set(await asyncio.gather(*futures))
        out = await loop.run_in_executor(pool.get(), compute_hash, {"text": "a"}, None)
        print(out["digest"], *sorted(pids), flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
""")


def test_pool_processes_exit_when_the_worker_is_killed() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        digest, *pids = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert digest.startswith("ca978112")
        assert pids and str(proc.pid) not in pids, "hash ran in a separate process"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in pids):
        assert time.monotonic() < deadline, f"pool processes {pids} outlived their worker"
        time.sleep(0.1)
