"""Typed settings read once from the environment and an optional `.env` file.

`load_settings()` reads `.env` (never overriding real environment variables), then builds one frozen
`Settings` struct; every process entry point calls it and passes the struct down. `database_url()`
prefers DATABASE_URL and otherwise composes one from DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME.
`secret_key_problem()` names why a SECRET_KEY is unusable (the .env.example placeholder, < 32 chars);
the long-running commands refuse to start with it (cli.py, exit code 2).
"""

from __future__ import annotations

import os
from urllib.parse import quote

import msgspec
from dotenv import load_dotenv


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    amqp_url: str
    queue_prefix: str
    backend_host: str
    backend_port: int
    secret_key: str
    maxplatform_url: str
    auth_mode: str
    maxplatform_me_path: str
    http_allowed_hosts: tuple[str, ...]
    lease_seconds: float
    heartbeat_seconds: float
    recovery_interval: float
    redispatch_after: float
    lease_recoveries: int
    worker_grace_seconds: float
    db_pool_size: int
    log_level: str
    ui_dist: str
    batch_concurrency: int = 100
    eager_steps: int = 32
    db_pipeline: bool = True
    # --- request hardening (README "Security") ---
    flow_max_nodes: int = 2000
    flow_max_edges: int = 10000
    flow_max_bytes: int = 2 * 1024 * 1024
    json_max_depth: int = 64
    cpu_work_limit: int = 2
    cors_origins: tuple[str, ...] = ()
    trusted_origins: tuple[str, ...] = ()
    cookie_secure: str = "auto"  # auto (TLS seen, directly or via a trusted proxy) | true | false
    forwarded_allow_ips: str = "127.0.0.1,::1"
    stream_recheck_s: float = 15.0
    streams_per_user: int = 20


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    user = quote(_env("DB_USER", "postgres"), safe="")
    password = os.environ.get("DB_PASSWORD", "")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = _env("DB_HOST", "127.0.0.1")
    port = _env("DB_PORT", "5432")
    name = _env("DB_NAME", "flowstudio")
    return f"postgresql://{auth}@{host}:{port}/{name}"


def _csv(name: str) -> tuple[str, ...]:
    return tuple(v.strip().rstrip("/") for v in _env(name, "").split(",") if v.strip())


ENV_EXAMPLE_SECRET_KEY = "change-me-to-a-long-random-string"
SECRET_KEY_MIN_LENGTH = 32


def secret_key_problem(secret_key: str) -> str | None:
    """Why SECRET_KEY must not be used, or None. Empty is allowed: secrets are then disabled."""
    if not secret_key:
        return None
    if secret_key == ENV_EXAMPLE_SECRET_KEY:
        return "SECRET_KEY is the .env.example placeholder; set a long random value"
    if len(secret_key) < SECRET_KEY_MIN_LENGTH:
        return f"SECRET_KEY is shorter than {SECRET_KEY_MIN_LENGTH} characters"
    return None


def load_settings(env_file: str | None = ".env") -> Settings:
    if env_file and os.path.exists(env_file):
        load_dotenv(env_file, override=False)
    lease = float(_env("LEASE_SECONDS", "30"))
    allowed = tuple(h.strip() for h in _env("HTTP_ALLOWED_HOSTS", "").split(",") if h.strip())
    return Settings(
        database_url=database_url(),
        amqp_url=_env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        queue_prefix=_env("QUEUE_PREFIX", "flowstudio"),
        backend_host=_env("BACKEND_HOST", "localhost"),
        backend_port=int(_env("BACKEND_PORT", "8005")),
        secret_key=_env("SECRET_KEY", ""),
        maxplatform_url=_env("MAXPLATFORM_URL", "http://localhost:8000"),
        auth_mode=_env("AUTH_MODE", "local"),
        maxplatform_me_path=_env("MAXPLATFORM_ME_PATH", "/api/auth/me"),
        http_allowed_hosts=allowed,
        lease_seconds=lease,
        heartbeat_seconds=float(_env("HEARTBEAT_SECONDS", str(min(5.0, lease / 3)))),
        recovery_interval=float(_env("RECOVERY_INTERVAL", "2")),
        redispatch_after=float(_env("REDISPATCH_AFTER", "60")),
        lease_recoveries=int(_env("LEASE_RECOVERIES", "5")),
        worker_grace_seconds=float(_env("WORKER_GRACE_SECONDS", "10")),
        db_pool_size=int(_env("DB_POOL_SIZE", "10")),
        log_level=_env("LOG_LEVEL", "INFO"),
        ui_dist=_env("UI_DIST", "frontend/dist"),
        batch_concurrency=int(_env("BATCH_CONCURRENCY", "100")),
        eager_steps=int(_env("EAGER_STEPS", "32")),
        db_pipeline=_env("DB_PIPELINE", "1").strip().lower() not in ("0", "false", "no", "off"),
        flow_max_nodes=int(_env("FLOW_MAX_NODES", "2000")),
        flow_max_edges=int(_env("FLOW_MAX_EDGES", "10000")),
        flow_max_bytes=int(_env("FLOW_MAX_BYTES", str(2 * 1024 * 1024))),
        json_max_depth=int(_env("JSON_MAX_DEPTH", "64")),
        cpu_work_limit=int(_env("CPU_WORK_LIMIT", "2")),
        cors_origins=_csv("CORS_ORIGINS"),
        trusted_origins=_csv("TRUSTED_ORIGINS"),
        cookie_secure=_env("COOKIE_SECURE", "auto").strip().lower(),
        forwarded_allow_ips=_env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        stream_recheck_s=float(_env("STREAM_RECHECK_S", "15")),
        streams_per_user=int(_env("STREAMS_PER_USER", "20")),
    )
