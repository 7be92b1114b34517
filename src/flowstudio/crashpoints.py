"""Named crash points for durability tests: `crashpoint("worker.after_commit")`.

When the environment variable FLOWSTUDIO_CRASHPOINTS lists a name (comma-separated, optionally
`name:N` to crash on the N-th hit), the process SIGKILLs itself there, exactly like `kill -9` at that
instant. Unset (production), a crash point is one dict lookup.
"""

from __future__ import annotations

import os
import signal

_SPEC: dict[str, int] = {}
_HITS: dict[str, int] = {}
for _item in filter(None, os.environ.get("FLOWSTUDIO_CRASHPOINTS", "").split(",")):
    _name, _, _n = _item.strip().partition(":")
    _SPEC[_name] = int(_n or 1)


def crashpoint(name: str) -> None:
    if name not in _SPEC:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] >= _SPEC[name]:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
