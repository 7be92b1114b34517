"""`clear_dead_postmaster` after a kill -9 of everything, where nothing reaps the killed postmaster.

A real zombie is made (a forked child that exits and is not waited for) and named in both
`postmaster.pid` and the socket lock file `.s.PGSQL.5432.lock`: PostgreSQL refuses to start while
either names a pid that `kill(pid, 0)` finds, and a zombie is found. Both files (and the socket) go;
with a live pid nothing is touched, so a running server is reused, never doubled.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from flowstudio.home import clear_dead_postmaster

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork")


def make_zombie() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return pid


def write_state(pgdata: Path, pid: int) -> None:
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{pid}\n{pgdata}\n")
    (pgdata / ".s.PGSQL.5432.lock").write_text(f"{pid}\n{pgdata}\n")
    (pgdata / ".s.PGSQL.5432").write_text("")


def test_zombie_postmaster_files_are_cleared(tmp_path: Path) -> None:
    pid = make_zombie()
    try:
        pgdata = tmp_path / "pgdata"
        write_state(pgdata, pid)
        assert clear_dead_postmaster(pgdata, wait_s=2) is True
        assert sorted(p.name for p in pgdata.iterdir()) == []
    finally:
        os.waitpid(pid, 0)


def test_live_postmaster_is_left_alone(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    write_state(pgdata, os.getpid())
    assert clear_dead_postmaster(pgdata, wait_s=2) is False
    assert sorted(p.name for p in pgdata.iterdir()) == [
        ".s.PGSQL.5432",
        ".s.PGSQL.5432.lock",
        "postmaster.pid",
    ]
