"""The bubblewrap command line and the env-file check, without running anything.

`bwrap_argv` must unshare every namespace, clear the environment, and bind read-only only system
paths and the base Python installation: never /work, the worker's cwd, a venv, /etc or /home; the
egress socket and /etc/ssl/certs appear only when a proxy is given. `env_file_warning` flags an env
file readable by group or others.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from flowstudio.sandbox.bwrap import EGRESS_DEST, Limits, bwrap_argv
from flowstudio.settings import env_file_warning


def binds(argv: list[str]) -> list[tuple[str, str, str]]:
    return [
        (argv[i], argv[i + 1], argv[i + 2])
        for i in range(len(argv) - 2)
        if argv[i] in ("--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try")
    ]


def test_bwrap_argv_isolates_and_binds_only_system_paths_read_only() -> None:
    argv = bwrap_argv(Limits(), "print(1)")
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--clearenv" in argv and "--share-net" not in argv
    cwd = str(Path.cwd().resolve())
    for kind, src, _dest in binds(argv):
        assert kind == "--ro-bind", (kind, src)
        assert not src.startswith(("/work", cwd, "/etc", "/home")), src
        assert src != sys.prefix or sys.prefix == sys.base_prefix, "the venv is never bound"
    setenv = {argv[i + 1] for i in range(len(argv)) if argv[i] == "--setenv"}
    assert setenv == {"PATH", "HOME", "LANG", "LC_ALL"}
    assert argv[argv.index("--chdir") + 1] == "/tmp"


def test_the_egress_socket_is_bound_only_with_a_proxy() -> None:
    assert EGRESS_DEST not in bwrap_argv(Limits(), "")
    argv = bwrap_argv(Limits(), "", "/tmp/fs-egress-x/egress.sock")
    assert ("--ro-bind", "/tmp/fs-egress-x/egress.sock", EGRESS_DEST) in binds(argv)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_env_file_readable_by_others_is_flagged(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SECRET_KEY=x\n")
    env.chmod(0o644)
    assert "chmod 600" in (env_file_warning(str(env)) or "")
    env.chmod(0o600)
    assert env_file_warning(str(env)) is None
    assert env_file_warning(str(tmp_path / "missing")) is None
